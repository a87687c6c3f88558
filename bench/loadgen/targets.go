package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync/atomic"

	vegeta "github.com/tsenart/vegeta/v12/lib"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
)

// The model's tensor names: digits and digits-torch, or a text model's (Plan.Text).
func (p Plan) inputName() string {
	if p.Text != "" {
		return "text"
	}
	return "pixels"
}

func (p Plan) outputName() string {
	if p.Text != "" {
		return "embedding"
	}
	return "probabilities"
}

func (p Plan) datatype() string {
	if p.Text != "" {
		return "BYTES"
	}
	return "FP32"
}

// A target is one scenario made ready for vegeta: the request it repeats and the
// client that carries it. Every transport goes through vegeta's attacker, so every
// scenario is paced, numbered and timed by the same code.
type target struct {
	name    string
	request vegeta.Target
	client  *http.Client
	close   func() error
}

// transports builds a target per scenario kind.
var transports = map[string]func(Plan, ScenarioSpec) (*target, error){
	"rest-json":   restJSON,
	"rest-binary": restBinary,
	"grpc":        grpcInfer,
	"nats":        natsInfer,
}

func newTarget(p Plan, s ScenarioSpec) (*target, error) {
	t, err := transports[s.Kind](p, s)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", s.Name, err)
	}
	t.name = s.Name
	return t, nil
}

// attacker returns a vegeta attacker for one step. Attackers stop for good after one
// attack, but the client, and so its connections, lives as long as the target.
func (t *target) attacker(p Plan, workers, maxWorkers uint64) *vegeta.Attacker {
	return vegeta.NewAttacker(
		vegeta.Workers(workers),
		vegeta.MaxWorkers(maxWorkers),
		vegeta.Client(t.client),
		vegeta.Timeout(seconds(p.TimeoutS)),
		vegeta.MaxBody(0), // the status is enough; reading bodies in would only cost the driver
	)
}

// batch is the plan's digit repeated Batch times: the [Batch, 64] input.
func (p Plan) batch() []float32 {
	rows := make([]float32, 0, p.Batch*len(p.Pixels))
	for range p.Batch {
		rows = append(rows, p.Pixels...)
	}
	return rows
}

func (p Plan) shape() []int64 {
	if p.Text != "" {
		return []int64{int64(p.Batch)}
	}
	return []int64{int64(p.Batch), int64(len(p.Pixels))}
}

// jsonData is the input's JSON data: the text per row, or the digit's pixels.
func (p Plan) jsonData() any {
	if p.Text != "" {
		texts := make([]string, p.Batch)
		for i := range texts {
			texts[i] = p.Text
		}
		return texts
	}
	return p.batch()
}

func (p Plan) rawInput() []byte {
	if p.Text != "" {
		// BYTES raw contents: per element a 4-byte little-endian length, then the bytes.
		var raw []byte
		for range p.Batch {
			raw = binary.LittleEndian.AppendUint32(raw, uint32(len(p.Text)))
			raw = append(raw, p.Text...)
		}
		return raw
	}
	rows := p.batch()
	raw := make([]byte, 4*len(rows))
	for i, v := range rows {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	return raw
}

func inferURL(base, model string) string { return base + "/v2/models/" + model + "/infer" }

// restClient keeps up to maxInFlight HTTP/1.1 keep-alive connections, one per
// request in flight, as a fleet of ordinary clients would.
func restClient(p Plan) *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: p.MaxInFlight,
		MaxConnsPerHost:     p.MaxInFlight,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}}
}

type jsonTensor struct {
	Name       string         `json:"name"`
	Shape      []int64        `json:"shape,omitempty"`
	Datatype   string         `json:"datatype,omitempty"`
	Parameters map[string]any `json:"parameters,omitempty"`
	Data       any            `json:"data,omitempty"`
}

type jsonRequest struct {
	Inputs  []jsonTensor `json:"inputs"`
	Outputs []jsonTensor `json:"outputs,omitempty"`
}

func restJSON(p Plan, s ScenarioSpec) (*target, error) {
	body, err := json.Marshal(jsonRequest{Inputs: []jsonTensor{
		{Name: p.inputName(), Shape: p.shape(), Datatype: p.datatype(), Data: p.jsonData()},
	}})
	if err != nil {
		return nil, fmt.Errorf("encode JSON request: %w", err)
	}
	client := restClient(p)
	return &target{
		request: vegeta.Target{
			Method: http.MethodPost,
			URL:    inferURL(s.Target, p.Model),
			Body:   body,
			Header: http.Header{"Content-Type": {"application/json"}},
		},
		client: client,
		close:  func() error { client.CloseIdleConnections(); return nil },
	}, nil
}

// restBinary speaks OIP's binary tensor extension: a JSON header whose length is in
// Inference-Header-Content-Length, then the raw tensor, whose length the header gives
// as binary_data_size; the output is asked for in binary too.
func restBinary(p Plan, s ScenarioSpec) (*target, error) {
	raw := p.rawInput()
	header, err := json.Marshal(jsonRequest{
		Inputs: []jsonTensor{{
			Name: p.inputName(), Shape: p.shape(), Datatype: p.datatype(),
			Parameters: map[string]any{"binary_data_size": len(raw)},
		}},
		Outputs: []jsonTensor{{Name: p.outputName(), Parameters: map[string]any{"binary_data": true}}},
	})
	if err != nil {
		return nil, fmt.Errorf("encode binary request header: %w", err)
	}
	client := restClient(p)
	return &target{
		request: vegeta.Target{
			Method: http.MethodPost,
			URL:    inferURL(s.Target, p.Model),
			Body:   append(header, raw...),
			Header: http.Header{
				"Content-Type":                    {"application/octet-stream"},
				"Inference-Header-Content-Length": {strconv.Itoa(len(header))},
			},
		},
		client: client,
		close:  func() error { client.CloseIdleConnections(); return nil },
	}, nil
}

// inferRequest is the scenario's ModelInferRequest, as gRPC and NATS carry it.
func (p Plan) inferRequest() *inferencepb.ModelInferRequest {
	return &inferencepb.ModelInferRequest{
		ModelName: p.Model,
		Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{
			{Name: p.inputName(), Datatype: p.datatype(), Shape: p.shape()},
		},
		RawInputContents: [][]byte{p.rawInput()},
	}
}

// grpcInfer calls ModelInfer with the generated stubs over s.Conns connections.
func grpcInfer(p Plan, s ScenarioSpec) (*target, error) {
	rt := &grpcRoundTripper{req: p.inferRequest()}
	conns := make([]*grpc.ClientConn, max(s.Conns, 1))
	for i := range conns {
		conn, err := grpc.NewClient(s.Target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, fmt.Errorf("dial %s: %w", s.Target, err)
		}
		conns[i] = conn
		rt.clients = append(rt.clients, inferencepb.NewGRPCInferenceServiceClient(conn))
	}
	return &target{
		request: vegeta.Target{Method: http.MethodPost, URL: "grpc://" + s.Target + "/ModelInfer"},
		client:  &http.Client{Transport: rt},
		close: func() error {
			var first error
			for _, c := range conns {
				if err := c.Close(); err != nil && first == nil {
					first = err
				}
			}
			return first
		},
	}, nil
}

// grpcRoundTripper carries vegeta's hits as ModelInfer calls instead of HTTP:
// vegeta has no gRPC client, but it calls whatever http.Client it is given, so
// gRPC is paced and timed by the same attacker as REST. The request's context
// carries vegeta's timeout.
type grpcRoundTripper struct {
	clients []inferencepb.GRPCInferenceServiceClient
	next    atomic.Uint64
	req     *inferencepb.ModelInferRequest // read-only: concurrent marshalling is safe
}

func (g *grpcRoundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	c := g.clients[g.next.Add(1)%uint64(len(g.clients))]
	if _, err := c.ModelInfer(r.Context(), g.req); err != nil {
		return nil, fmt.Errorf("ModelInfer: %w", err)
	}
	return &http.Response{
		Status: "200 OK", StatusCode: http.StatusOK, Proto: "gRPC",
		Header: http.Header{}, Body: http.NoBody, Request: r,
	}, nil
}

// natsInfer sends the serialized ModelInferRequest to the model's infer subject
// with nats.go's request/reply, as proto/README.md maps ModelInfer onto NATS:
// what a NATS client calling the Python workers directly does. s.Target is the
// NATS server's URL; s.Subject overrides the subject (default oip.v2.models.<m>.infer).
func natsInfer(p Plan, s ScenarioSpec) (*target, error) {
	payload, err := proto.Marshal(p.inferRequest())
	if err != nil {
		return nil, fmt.Errorf("encode ModelInferRequest: %w", err)
	}
	subject := s.Subject
	if subject == "" {
		subject = "oip.v2.models." + p.Model + ".infer"
	}
	nc, err := nats.Connect(s.Target, nats.Name("tandem-loadgen"), nats.MaxReconnects(0))
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", s.Target, err)
	}
	rt := &natsRoundTripper{nc: nc, subject: subject, payload: payload}
	return &target{
		request: vegeta.Target{Method: http.MethodPost, URL: "nats://" + subject},
		client:  &http.Client{Transport: rt},
		close:   func() error { nc.Close(); return nil },
	}, nil
}

// natsRoundTripper carries vegeta's hits as NATS requests, as grpcRoundTripper
// does gRPC calls. One connection carries every request in flight (nats.go muxes
// the replies on one inbox subscription), as one client process would.
type natsRoundTripper struct {
	nc      *nats.Conn
	subject string
	payload []byte // read-only: shared by every request
}

func (n *natsRoundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	msg, err := n.nc.RequestMsgWithContext(r.Context(), &nats.Msg{Subject: n.subject, Data: n.payload})
	if err != nil {
		return nil, fmt.Errorf("NATS request: %w", err)
	}
	if code := msg.Header.Get("Nats-Service-Error-Code"); code != "" {
		return nil, fmt.Errorf("NATS worker error %s: %s", code, msg.Header.Get("Nats-Service-Error"))
	}
	var resp inferencepb.ModelInferResponse
	if err := proto.Unmarshal(msg.Data, &resp); err != nil {
		return nil, fmt.Errorf("decode ModelInferResponse: %w", err)
	}
	if len(resp.GetRawOutputContents()) == 0 && len(resp.GetOutputs()) == 0 {
		return nil, fmt.Errorf("NATS reply without outputs")
	}
	return &http.Response{
		Status: "200 OK", StatusCode: http.StatusOK, Proto: "NATS",
		Header: http.Header{}, Body: http.NoBody, Request: r,
	}, nil
}
