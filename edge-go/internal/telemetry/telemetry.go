// Package telemetry sets up OpenTelemetry tracing for the gateway from the
// standard OTEL_* environment variables only, so that the gateway and the
// Python service are pointed at a collector the same way.
//
// OTEL_TRACES_EXPORTER picks the exporter (otlp, console, none; through
// contrib's autoexport) and OTEL_PROPAGATORS the propagators (tracecontext,
// baggage, b3, b3multi, jaeger, xray, ottrace, none; through autoprop;
// default tracecontext,baggage). OTEL_SDK_DISABLED=true means no SDK at all.
//
// When OTEL_TRACES_EXPORTER is unset, the gateway exports over OTLP only if
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set.
// The specification's default would be otlp to localhost:4318 regardless,
// but a gateway started without a collector would then retry exports to
// nowhere and pay for span recording on every request; asking for it
// explicitly (OTEL_TRACES_EXPORTER=otlp) still gets that. Without an
// exporter there is no batch processor either: the tracer provider stays
// OpenTelemetry's no-op one, which still carries an incoming trace context
// through the gateway (into the logs and on to the inference service) at
// almost no cost.
//
// OTEL_SEMCONV_STABILITY_OPT_IN: both sides of the hop run with "rpc", the
// stable RPC conventions (rpc.system.name, rpc.method
// "inference.GRPCInferenceService/ModelInfer", rpc.response.status_code).
// That is what otelgrpc emits when the variable is unset too, and the Python
// service writes its gRPC spans itself with the same attributes; "rpc/old"
// or "rpc/dup" would make otelgrpc emit the old ones instead or as well, and
// the two ends would no longer agree.
package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/contrib/propagators/autoprop"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

const (
	// DefaultServiceName is the gateway's service.name unless
	// OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES says otherwise.
	DefaultServiceName = "tandem-gateway"

	protocolGRPC = "grpc"
	protocolHTTP = "http/protobuf"

	// The values of OTEL_TRACES_EXPORTER the gateway accepts.
	ExporterOTLP    = "otlp"
	ExporterConsole = "console"
	ExporterNone    = "none"
)

// Config is what Setup needs besides the environment.
type Config struct {
	// ServiceVersion is the gateway's version, as service.version.
	ServiceVersion string
	// Logger receives export errors.
	Logger *slog.Logger
	// LookupEnv reads the environment (os.LookupEnv in production).
	LookupEnv func(string) (string, bool)
}

// Telemetry is the process's tracing setup; Shutdown flushes it.
type Telemetry struct {
	provider *sdktrace.TracerProvider // nil when nothing is exported
}

// Setup installs the propagators of OTEL_PROPAGATORS (default the W3C trace
// context and baggage) globally and, when an exporter is chosen (see
// Exporter), a tracer provider that exports to it in batches. The sampler comes from OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG (default parentbased_always_on), the batching from
// OTEL_BSP_*, and everything about the exporter (endpoint, headers,
// compression, timeout) from OTEL_EXPORTER_OTLP_*: the SDK reads them itself.
func Setup(ctx context.Context, cfg Config) (*Telemetry, error) {
	prop, err := Propagator(cfg.LookupEnv)
	if err != nil {
		return nil, err
	}
	// Set even with the SDK disabled: propagation is the API's, and carrying
	// the client's trace context into the logs and on to the inference
	// service costs next to nothing.
	otel.SetTextMapPropagator(prop)
	kind, err := Exporter(cfg.LookupEnv)
	if err != nil {
		return nil, err
	}
	if kind == ExporterNone {
		return &Telemetry{}, nil
	}

	// autoexport reads OTEL_TRACES_EXPORTER itself (the same value Exporter
	// checked, in production); when it is unset an endpoint was set, and
	// the fallback builds the OTLP exporter for the protocol asked for.
	exporter, err := autoexport.NewSpanExporter(ctx, autoexport.WithFallbackSpanExporter(
		func(ctx context.Context) (sdktrace.SpanExporter, error) { return newExporter(ctx, cfg.LookupEnv) }))
	if err != nil {
		return nil, fmt.Errorf("telemetry: %s exporter: %w", kind, err)
	}
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithProcessPID(),
		resource.WithAttributes(
			attribute.String("service.name", DefaultServiceName),
			attribute.String("service.version", cfg.ServiceVersion),
		),
		// Last, so that OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win.
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	provider := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exporter),
		sdktrace.WithResource(res),
	)
	otel.SetTracerProvider(provider)
	if cfg.Logger != nil {
		log := cfg.Logger
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			log.Warn("telemetry", "error", err)
		}))
	}
	return &Telemetry{provider: provider}, nil
}

// Recording is a Telemetry that records into provider, which the caller
// owns: for tests, with an in-memory span recorder.
func Recording(provider *sdktrace.TracerProvider) *Telemetry {
	return &Telemetry{provider: provider}
}

// Exporting reports whether spans are exported at all.
func (t *Telemetry) Exporting() bool { return t.provider != nil }

// Shutdown exports the spans still buffered and stops exporting.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t.provider == nil {
		return nil
	}
	if err := t.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("telemetry: shutdown: %w", err)
	}
	return nil
}

// Exporter is the span exporter the environment asks for: none when
// OTEL_SDK_DISABLED is true; else OTEL_TRACES_EXPORTER when set (otlp,
// console or none; a list is not supported); else otlp when an OTLP
// endpoint is set, and none when not.
func Exporter(lookupEnv func(string) (string, bool)) (string, error) {
	if v, _ := lookupEnv("OTEL_SDK_DISABLED"); strings.EqualFold(strings.TrimSpace(v), "true") {
		return ExporterNone, nil
	}
	if v, ok := lookupEnv("OTEL_TRACES_EXPORTER"); ok && strings.TrimSpace(v) != "" {
		kind := strings.ToLower(strings.TrimSpace(v))
		switch kind {
		case ExporterOTLP:
			if _, err := Protocol(lookupEnv); err != nil {
				return "", err
			}
			return kind, nil
		case ExporterConsole, ExporterNone:
			return kind, nil
		}
		return "", fmt.Errorf("telemetry: OTEL_TRACES_EXPORTER %q is not supported: use %s, %s or %s",
			v, ExporterOTLP, ExporterConsole, ExporterNone)
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
		if v, ok := lookupEnv(name); ok && strings.TrimSpace(v) != "" {
			if _, err := Protocol(lookupEnv); err != nil {
				return "", err
			}
			return ExporterOTLP, nil
		}
	}
	return ExporterNone, nil
}

// Propagator is the composite of the propagators OTEL_PROPAGATORS names
// (comma-separated), tracecontext,baggage when it is unset or empty; "none"
// propagates nothing.
func Propagator(lookupEnv func(string) (string, bool)) (propagation.TextMapPropagator, error) {
	v, _ := lookupEnv("OTEL_PROPAGATORS")
	var names []string
	for name := range strings.SplitSeq(v, ",") {
		if name = strings.ToLower(strings.TrimSpace(name)); name != "" {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}), nil
	}
	prop, err := autoprop.TextMapPropagator(names...)
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTEL_PROPAGATORS %q: %w", v, err)
	}
	return prop, nil
}

// Protocol is the OTLP protocol for traces: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
// else OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf (the specification's
// default).
func Protocol(lookupEnv func(string) (string, bool)) (string, error) {
	protocol := protocolHTTP
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if v, ok := lookupEnv(name); ok && strings.TrimSpace(v) != "" {
			protocol = strings.TrimSpace(v)
			break
		}
	}
	switch protocol {
	case protocolGRPC, protocolHTTP:
		return protocol, nil
	}
	return "", fmt.Errorf("telemetry: OTLP protocol %q is not supported: use %s or %s", protocol, protocolGRPC, protocolHTTP)
}

func newExporter(ctx context.Context, lookupEnv func(string) (string, bool)) (sdktrace.SpanExporter, error) {
	protocol, err := Protocol(lookupEnv)
	if err != nil {
		return nil, err
	}
	var exporter *otlptrace.Exporter
	if protocol == protocolGRPC {
		exporter, err = otlptracegrpc.New(ctx)
	} else {
		exporter, err = otlptracehttp.New(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP %s exporter: %w", protocol, err)
	}
	return exporter, nil
}
