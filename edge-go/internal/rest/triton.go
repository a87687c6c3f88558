package rest

// Triton's HTTP extensions (model_configuration, statistics,
// model_repository), forwarded to the inference service as the gRPC RPCs
// of the same names (proto/README.md).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/auth"
)

// tritonExtensions are Triton's extensions the inference service answers
// and the gateway forwards.
var tritonExtensions = []string{"model_configuration", "model_repository", "statistics"}

// modelOfPath is the model a request is for, for the key's scope: the
// {model} of /v2/models/{model}/... and of /v2/repository/models/{model}/...;
// none for /v2/models/stats (every model) and the repository index.
func modelOfPath(r *http.Request) string {
	if r.URL.Path == "/v2/models/stats" {
		return ""
	}
	if rest, ok := strings.CutPrefix(r.URL.Path, "/v2/repository/models/"); ok {
		name, _, _ := strings.Cut(rest, "/")
		return name
	}
	return auth.ModelFromPath(r.URL.Path)
}

// modelConfig answers GET /v2/models/{m}[/versions/{v}]/config with the
// ModelConfig itself, as Triton writes it.
func (h *Handler) modelConfig(w http.ResponseWriter, r *http.Request) {
	ctx, cancel, err := h.callContext(r, 0)
	if err != nil {
		writeError(w, r, err)
		return
	}
	defer cancel()
	resp, err := h.tr.ModelConfig(ctx, &pb.ModelConfigRequest{Name: r.PathValue("model"), Version: r.PathValue("version")})
	if err != nil {
		writeError(w, r, err)
		return
	}
	cfg := resp.GetConfig()
	if cfg == nil {
		cfg = &pb.ModelConfig{}
	}
	h.writeProto(w, r, cfg)
}

// modelStats answers GET /v2/models/stats (every model) and
// GET /v2/models/{m}[/versions/{v}]/stats: {"model_stats": [...]}.
func (h *Handler) modelStats(w http.ResponseWriter, r *http.Request) {
	ctx, cancel, err := h.callContext(r, 0)
	if err != nil {
		writeError(w, r, err)
		return
	}
	defer cancel()
	resp, err := h.tr.ModelStatistics(ctx, &pb.ModelStatisticsRequest{Name: r.PathValue("model"), Version: r.PathValue("version")})
	if err != nil {
		writeError(w, r, err)
		return
	}
	h.writeProto(w, r, resp)
}

// repositoryIndex answers POST /v2/repository/index, whose optional body
// is {"ready": bool}, with a JSON array of {"name", "version", "state",
// "reason"}.
func (h *Handler) repositoryIndex(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Ready *bool `json:"ready"`
	}
	if err := h.decodeOptional(w, r, &body); err != nil {
		writeError(w, r, err)
		return
	}
	ctx, cancel, err := h.callContext(r, 0)
	if err != nil {
		writeError(w, r, err)
		return
	}
	defer cancel()
	resp, err := h.tr.RepositoryIndex(ctx, &pb.RepositoryIndexRequest{Ready: body.Ready != nil && *body.Ready})
	if err != nil {
		writeError(w, r, err)
		return
	}
	type entry struct {
		Name    string `json:"name"`
		Version string `json:"version"`
		State   string `json:"state"`
		Reason  string `json:"reason"`
	}
	out := make([]entry, 0, len(resp.GetModels()))
	for _, m := range resp.GetModels() {
		out = append(out, entry{Name: m.GetName(), Version: m.GetVersion(), State: m.GetState(), Reason: m.GetReason()})
	}
	b, err := marshalJSON(out)
	if err != nil {
		writeError(w, r, fmt.Errorf("encode repository index: %w", err))
		return
	}
	writeJSON(w, http.StatusOK, b)
}

// repositoryLoad answers POST /v2/repository/models/{m}/load and
// repositoryUnload .../unload, whose optional body is {"parameters": {...}}:
// 200 with an empty body once done.
func (h *Handler) repositoryLoad(w http.ResponseWriter, r *http.Request) {
	h.repositoryChange(w, r, func(ctx context.Context, model string, params map[string]*pb.ModelRepositoryParameter) error {
		_, err := h.tr.RepositoryModelLoad(ctx, &pb.RepositoryModelLoadRequest{ModelName: model, Parameters: params})
		return err
	})
}

func (h *Handler) repositoryUnload(w http.ResponseWriter, r *http.Request) {
	h.repositoryChange(w, r, func(ctx context.Context, model string, params map[string]*pb.ModelRepositoryParameter) error {
		_, err := h.tr.RepositoryModelUnload(ctx, &pb.RepositoryModelUnloadRequest{ModelName: model, Parameters: params})
		return err
	})
}

// repositoryChange is what load and unload share: the optional parameters,
// the call's context, and 200 with an empty body once change is done.
func (h *Handler) repositoryChange(w http.ResponseWriter, r *http.Request, change func(context.Context, string, map[string]*pb.ModelRepositoryParameter) error) {
	params, err := h.repositoryParameters(w, r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	ctx, cancel, err := h.callContext(r, 0)
	if err != nil {
		writeError(w, r, err)
		return
	}
	defer cancel()
	if err := change(ctx, r.PathValue("model"), params); err != nil {
		writeError(w, r, err)
		return
	}
	writeEmpty(w)
}

func writeEmpty(w http.ResponseWriter) {
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}

// repositoryParameters decodes the optional {"parameters": {...}} of a load
// or unload: a boolean, an integer or a string each.
func (h *Handler) repositoryParameters(w http.ResponseWriter, r *http.Request) (map[string]*pb.ModelRepositoryParameter, error) {
	var body struct {
		Parameters map[string]json.RawMessage `json:"parameters"`
	}
	if err := h.decodeOptional(w, r, &body); err != nil {
		return nil, err
	}
	if len(body.Parameters) == 0 {
		return nil, nil
	}
	params := make(map[string]*pb.ModelRepositoryParameter, len(body.Parameters))
	for name, raw := range body.Parameters {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, badRequest("parameter %q: %v", name, err)
		}
		p := &pb.ModelRepositoryParameter{}
		switch v := v.(type) {
		case bool:
			p.ParameterChoice = &pb.ModelRepositoryParameter_BoolParam{BoolParam: v}
		case string:
			p.ParameterChoice = &pb.ModelRepositoryParameter_StringParam{StringParam: v}
		case json.Number:
			n, err := v.Int64()
			if err != nil {
				return nil, badRequest("parameter %q: %s is not an integer", name, v)
			}
			p.ParameterChoice = &pb.ModelRepositoryParameter_Int64Param{Int64Param: n}
		default:
			return nil, badRequest("parameter %q must be a boolean, an integer or a string, not %s", name, raw)
		}
		params[name] = p
	}
	return params, nil
}

// decodeOptional decodes a JSON object body into v; an empty body leaves v
// as it is.
func (h *Handler) decodeOptional(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := readBody(w, r, h.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return badRequest("the request body's %q must be %s, not a JSON %s", typeErr.Field, typeErr.Type, typeErr.Value)
		}
		return badRequest("the request body is not a JSON object: %v", err)
	}
	if dec.More() {
		return badRequest("the request body has data after its JSON object")
	}
	return nil
}

func badRequest(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

// writeProto writes m as Triton writes its JSON: proto field names, every
// field (defaults too), and 64-bit integers as JSON numbers.
func (h *Handler) writeProto(w http.ResponseWriter, r *http.Request, m proto.Message) {
	b, err := MarshalTriton(m)
	if err != nil {
		writeError(w, r, fmt.Errorf("encode %s: %w", m.ProtoReflect().Descriptor().Name(), err))
		return
	}
	writeJSON(w, http.StatusOK, b)
}

// MarshalTriton encodes m as Triton's HTTP API does: protojson with the
// proto field names and the defaults emitted, except that 64-bit integers,
// which protojson writes as strings, are JSON numbers.
func MarshalTriton(m proto.Message) ([]byte, error) {
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if err := numbers(v, m.ProtoReflect().Descriptor()); err != nil {
		return nil, err
	}
	return marshalJSON(v)
}

// numbers turns the 64-bit integers of v, the protojson of a message of
// type md, from strings into numbers, in place.
func numbers(v any, md protoreflect.MessageDescriptor) error {
	obj, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		fv, ok := obj[string(fd.Name())]
		if !ok || fv == nil {
			continue
		}
		switch {
		case fd.IsMap():
			m, _ := fv.(map[string]any)
			for k, e := range m {
				n, err := field(e, fd.MapValue())
				if err != nil {
					return err
				}
				m[k] = n
			}
		case fd.IsList():
			l, _ := fv.([]any)
			for j, e := range l {
				n, err := field(e, fd)
				if err != nil {
					return err
				}
				l[j] = n
			}
		default:
			n, err := field(fv, fd)
			if err != nil {
				return err
			}
			obj[string(fd.Name())] = n
		}
	}
	return nil
}

// field converts one value of fd (an element, for a list).
func field(v any, fd protoreflect.FieldDescriptor) (any, error) {
	switch fd.Kind() {
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
		protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		if s, ok := v.(string); ok {
			return json.Number(s), nil
		}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		if fd.Message().FullName().Parent() == "google.protobuf" {
			return v, nil // well-known types have JSON forms of their own
		}
		return v, numbers(v, fd.Message())
	}
	return v, nil
}

func marshalJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
