// Package config reads the gateway's settings. Every setting is a
// command-line flag with an environment-variable twin named after it
// (--inference-addr and TANDEM_INFERENCE_ADDR); a flag that is given wins over
// its variable, and the variable over the named default.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/tandem-ml/tandem/edge-go/internal/demopage"
	"github.com/tandem-ml/tandem/edge-go/internal/natssubject"
	"github.com/tandem-ml/tandem/edge-go/internal/redact"
)

// The defaults, shared with tests, the bench and compose (edge-go/README.md).
const (
	// The listeners are loopback unless told otherwise: a gateway reachable
	// from the network is a decision (containers pass ":8000" and so on).
	DefaultHTTPAddr      = "127.0.0.1:8000"
	DefaultGRPCAddr      = "127.0.0.1:8001"
	DefaultAdminAddr     = "127.0.0.1:9000" // /metrics, and /debug/pprof/ with --pprof
	DefaultTransport     = "grpc"
	DefaultInferenceAddr = "127.0.0.1:50051"

	DefaultNATSSubjectPrefix = natssubject.DefaultPrefix
	DefaultNATSListen        = "127.0.0.1:4222"
	DefaultNATSMonitorAddr   = "127.0.0.1:8222"
	// DefaultTimeout bounds one call to the inference service.
	DefaultTimeout = 10 * time.Second
	// DefaultMaxBodyBytes admits a batch of thousands of digits as JSON.
	DefaultMaxBodyBytes = 8 << 20
	// DefaultMaxMessageBytes is the inference service's own default limit:
	// the gateway must not send what the service would refuse.
	DefaultMaxMessageBytes = 16 << 20

	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	// DefaultShutdownTimeout fits in Kubernetes' default 30 s grace period.
	DefaultShutdownTimeout = 20 * time.Second
	// DefaultDrainDelay is how long readiness is 503 before the listeners
	// close: long enough for a load balancer to stop sending.
	DefaultDrainDelay = 3 * time.Second
	DefaultLogLevel   = slog.LevelInfo

	// DefaultMaxInFlight is sized from capacity x latency target: about
	// 10k req/s x 20 ms = 200 in flight at steady load, with room (as
	// Envoy's default max_requests, 1024) for the bursts that coalescing
	// serves within the target: a thousand callers at once are a few
	// merged calls. A stalled worker still holds at most this many.
	DefaultMaxInFlight              = 1024
	DefaultMaxConnections           = 1024
	DefaultMaxHeaderBytes           = 64 << 10
	DefaultGRPCMaxConcurrentStreams = 256

	// EnvPrefix starts the name of every environment variable.
	EnvPrefix = "TANDEM_"
)

// writeTimeoutMargin is how much longer than --timeout the write timeout is
// unless set, so that raising --timeout alone still works.
const writeTimeoutMargin = DefaultWriteTimeout - DefaultTimeout

// Transports lists the values --transport accepts.
var Transports = []string{"grpc", "nats"}

// Config is every setting of the gateway.
type Config struct {
	HTTPAddr      string
	GRPCAddr      string
	AdminAddr     string
	Transport     string
	InferenceAddr string

	NATSURL           string
	NATSSubjectPrefix string
	NATSListen        string
	NATSMonitorAddr   string
	HopAttemptTimeout time.Duration // ignored; kept while scripts still pass it
	Timeout           time.Duration
	MaxBodyBytes      int64
	MaxMessageBytes   int

	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	ShutdownTimeout   time.Duration

	LogLevel   slog.Level
	DrainDelay time.Duration

	// PProf mounts /debug/pprof/ on the admin listener.
	PProf bool

	// APIKeys is the --api-keys list, comma-separated; it never shows in
	// logs or --help.
	APIKeys     redact.Secret
	APIKeysFile string
	RateLimit   float64
	RateBurst   int
	MaxInFlight int

	MaxConnections           int
	MaxHeaderBytes           int
	GRPCMaxConcurrentStreams uint

	TLSCert, TLSKey, TLSClientCA string

	// The gRPC hop's TLS (mTLS with a certificate and key).
	InferenceTLSCA, InferenceTLSCert, InferenceTLSKey, InferenceTLSServerName string

	// NATS credentials; NATSPassword never shows in logs or --help.
	NATSUser                           string
	NATSPassword                       redact.Secret
	NATSCreds, NATSNKey                string
	NATSTLSCA, NATSTLSCert, NATSTLSKey string
	// NATSServerConfig is the embedded nats-server's config file.
	NATSServerConfig string

	// RoutingFile is the per-model routing file (TOML; request coalescing);
	// empty: no coalescing.
	RoutingFile string

	// DemoPage serves the demo page at / on the REST listener; DemoTraceURL
	// is the template of its links to a trace ({trace_id}; empty: none).
	DemoPage     bool
	DemoTraceURL string
}

// Load parses args (without the program name) and fills what they leave out
// from the environment through lookupEnv (os.LookupEnv in production). It
// returns flag.ErrHelp after writing the usage to output when asked for help.
func Load(args []string, lookupEnv func(string) (string, bool), output io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(output)

	fs.StringVar(&c.HTTPAddr, "http-addr", DefaultHTTPAddr, "host:port of the OIP REST listener")
	fs.StringVar(&c.GRPCAddr, "grpc-addr", DefaultGRPCAddr, "host:port of the OIP gRPC listener (empty: none)")
	fs.StringVar(&c.AdminAddr, "admin-addr", DefaultAdminAddr, "host:port of the admin listener: Prometheus /metrics, and /debug/pprof/ with --pprof (empty: none)")
	fs.BoolVar(&c.PProf, "pprof", false, "serve Go's profiles at /debug/pprof/ on the admin listener")
	fs.StringVar(&c.Transport, "transport", DefaultTransport, "how to reach the inference service: "+strings.Join(Transports, ", "))
	fs.StringVar(&c.InferenceAddr, "inference-addr", DefaultInferenceAddr, "with --transport grpc: the inference service's OIP gRPC endpoint: host:port; several workers as host:port,host:port; or dns:///name:port (every address the name resolves to); several are balanced round robin over those reporting grpc.health.v1 SERVING")
	fs.StringVar(&c.NATSURL, "nats-url", "", "with --transport nats: NATS server URLs, comma-separated (empty: run an embedded nats-server)")
	fs.StringVar(&c.NATSSubjectPrefix, "nats-subject-prefix", DefaultNATSSubjectPrefix, "with --transport nats: the prefix of every subject")
	fs.StringVar(&c.NATSListen, "nats-listen", DefaultNATSListen, "host:port of the embedded nats-server's client listener, which workers connect to")
	fs.StringVar(&c.NATSMonitorAddr, "nats-monitor-addr", DefaultNATSMonitorAddr, "host:port of the embedded nats-server's monitoring endpoints (empty: none)")
	fs.DurationVar(&c.HopAttemptTimeout, "hop-attempt-timeout", 0, "ignored, and going away: an attempt that may have reached a worker is no longer retried")
	fs.DurationVar(&c.Timeout, "timeout", DefaultTimeout, "longest wait for one call to the inference service")
	fs.Int64Var(&c.MaxBodyBytes, "max-body-bytes", DefaultMaxBodyBytes, "largest request body accepted; larger ones get 413")
	fs.IntVar(&c.MaxMessageBytes, "max-message-bytes", DefaultMaxMessageBytes, "largest message sent to or received from the inference service; at most the service's own limit")
	fs.DurationVar(&c.ReadHeaderTimeout, "read-header-timeout", DefaultReadHeaderTimeout, "time to read a request's headers (0: none)")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", DefaultReadTimeout, "time to read a whole request (0: none)")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", DefaultWriteTimeout, "time from the end of the headers to the end of the response (0: none); must exceed --timeout, and is 20s more than --timeout unless set")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", DefaultIdleTimeout, "how long a keep-alive connection may wait for its next request (0: none)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", DefaultShutdownTimeout, "how long requests in flight get to finish once the listeners close")
	fs.DurationVar(&c.DrainDelay, "drain-delay", DefaultDrainDelay, "after SIGTERM or SIGINT, how long readiness is 503 / NOT_SERVING while requests are still served, before the listeners close")
	fs.Func("api-keys", "comma-separated API keys clients must present (Authorization: Bearer KEY); empty: none", func(v string) error {
		c.APIKeys = redact.Secret(v)
		return nil
	})
	fs.StringVar(&c.APIKeysFile, "api-keys-file", "", "`file` of API keys, one a line (`KEY model1,model2` scopes a key; # comments)")
	fs.Float64Var(&c.RateLimit, "rate-limit", 0, "requests/s per API key, or per client IP without keys (0: no limit)")
	fs.IntVar(&c.RateBurst, "rate-burst", 0, "requests a client may send at once above --rate-limit (0: the rate, at least 1)")
	fs.IntVar(&c.MaxInFlight, "max-in-flight", DefaultMaxInFlight, "infer requests in flight per model, REST and gRPC together, beyond which requests are refused with 429 (0: no limit)")
	fs.IntVar(&c.MaxConnections, "max-connections", DefaultMaxConnections, "concurrent connections to the REST listener (0: no limit)")
	fs.IntVar(&c.MaxHeaderBytes, "max-header-bytes", DefaultMaxHeaderBytes, "largest request header block on the REST listener")
	fs.UintVar(&c.GRPCMaxConcurrentStreams, "grpc-max-concurrent-streams", DefaultGRPCMaxConcurrentStreams, "concurrent calls per connection to the OIP gRPC listener")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "`file`: PEM certificate of the REST and gRPC listeners (with --tls-key; empty: plain TCP)")
	fs.StringVar(&c.TLSKey, "tls-key", "", "`file`: PEM private key of --tls-cert")
	fs.StringVar(&c.InferenceTLSCA, "inference-tls-ca", "", "with --transport grpc: `file` of PEM CA certificates the inference service's certificate must chain to; any --inference-tls-* turns TLS on")
	fs.StringVar(&c.InferenceTLSCert, "inference-tls-cert", "", "with --transport grpc: `file`: the gateway's PEM client certificate (mTLS, with --inference-tls-key)")
	fs.StringVar(&c.InferenceTLSKey, "inference-tls-key", "", "with --transport grpc: `file`: the PEM key of --inference-tls-cert")
	fs.StringVar(&c.InferenceTLSServerName, "inference-tls-server-name", "", "with --transport grpc: the name the service's certificate must carry (empty: the host of --inference-addr)")
	fs.StringVar(&c.NATSServerConfig, "nats-server-config", "", "`file`: a nats-server config (authorization, accounts, permissions, tls) for the embedded server; without one that sets auth it listens on loopback only")
	fs.StringVar(&c.NATSUser, "nats-user", "", "with --transport nats: NATS user name (with --nats-password)")
	fs.Func("nats-password", "with --transport nats: NATS password (prefer TANDEM_NATS_PASSWORD to the command line)", func(v string) error {
		c.NATSPassword = redact.Secret(v)
		return nil
	})
	fs.StringVar(&c.NATSCreds, "nats-creds", "", "with --transport nats: `file`: NATS user credentials (.creds: JWT and nkey seed)")
	fs.StringVar(&c.NATSNKey, "nats-nkey", "", "with --transport nats: `file`: NATS user nkey seed")
	fs.StringVar(&c.NATSTLSCA, "nats-tls-ca", "", "with --transport nats: `file` of PEM CA certificates for the NATS server's; any --nats-tls-* turns TLS on")
	fs.StringVar(&c.NATSTLSCert, "nats-tls-cert", "", "with --transport nats: `file`: PEM client certificate for NATS (with --nats-tls-key)")
	fs.StringVar(&c.NATSTLSKey, "nats-tls-key", "", "with --transport nats: `file`: the PEM key of --nats-tls-cert")
	fs.StringVar(&c.TLSClientCA, "tls-client-ca", "", "`file`: PEM CA certificates; when set, clients must present a certificate it signed (mTLS)")
	fs.TextVar(&c.LogLevel, "log-level", DefaultLogLevel, "`level`: debug, info, warn or error; requests are logged at debug, failed ones at info")
	fs.StringVar(&c.RoutingFile, "routing", "", "`file` of per-model routing settings (TOML; request coalescing, see edge-go/routing.toml); empty: none")

	fs.BoolVar(&c.DemoPage, "demo-page", true, "serve the demo page at / on the REST listener (internal/demopage); false: / is the API's 404")
	fs.StringVar(&c.DemoTraceURL, "demo-trace-url", demopage.DefaultTraceURL, "the demo page's link to a request's trace: a URL with "+demopage.TraceIDPlaceholder+" where the trace id goes (empty: no link)")

	fs.VisitAll(func(f *flag.Flag) { f.Usage += " (env " + EnvName(f.Name) + ")" })
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if err := fillFromEnv(fs, lookupEnv); err != nil {
		return Config{}, err
	}
	given := map[string]bool{} // by flag or environment
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if !given["write-timeout"] {
		c.WriteTimeout = max(c.WriteTimeout, c.Timeout+writeTimeoutMargin)
	}
	if err := c.validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// APIKeyList is --api-keys split on commas, blanks dropped.
func (c Config) APIKeyList() []string {
	var keys []string
	for k := range strings.SplitSeq(c.APIKeys.Reveal(), ",") {
		if k = strings.TrimSpace(k); k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

// EnvName is the environment variable that stands in for a flag.
func EnvName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// fillFromEnv sets every flag not given on the command line from its
// environment variable, when that is set.
func fillFromEnv(fs *flag.FlagSet, lookupEnv func(string) (string, bool)) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		name := EnvName(f.Name)
		if value, ok := lookupEnv(name); ok {
			if err := fs.Set(f.Name, value); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", name, value, err))
			}
		}
	})
	return errors.Join(errs...)
}

func (c Config) validate() error {
	var errs []error
	if c.HTTPAddr == "" {
		errs = append(errs, errors.New("--http-addr is empty"))
	}
	if c.Transport == "grpc" && c.InferenceAddr == "" {
		errs = append(errs, errors.New("--inference-addr is empty"))
	}
	if c.Transport == "nats" {
		if err := natssubject.ValidatePrefix(c.NATSSubjectPrefix); err != nil {
			errs = append(errs, fmt.Errorf("--nats-subject-prefix: %w", err))
		}
		if c.NATSURL == "" && c.NATSListen == "" {
			errs = append(errs, errors.New("--nats-listen is empty: the embedded nats-server (run when --nats-url is empty) needs it"))
		}
	}
	if !slices.Contains(Transports, c.Transport) {
		errs = append(errs, fmt.Errorf("--transport %q: expected one of %s", c.Transport, strings.Join(Transports, ", ")))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("--timeout %v: must be positive", c.Timeout))
	}
	if c.MaxBodyBytes <= 0 {
		errs = append(errs, fmt.Errorf("--max-body-bytes %d: must be positive", c.MaxBodyBytes))
	}
	if c.MaxMessageBytes <= 0 {
		errs = append(errs, fmt.Errorf("--max-message-bytes %d: must be positive", c.MaxMessageBytes))
	}
	if c.MaxHeaderBytes <= 0 {
		errs = append(errs, fmt.Errorf("--max-header-bytes %d: must be positive", c.MaxHeaderBytes))
	}
	if c.GRPCMaxConcurrentStreams == 0 {
		errs = append(errs, errors.New("--grpc-max-concurrent-streams 0: must be positive"))
	}
	for _, n := range []struct {
		flag  string
		value float64
	}{
		{"--rate-limit", c.RateLimit},
		{"--rate-burst", float64(c.RateBurst)},
		{"--max-in-flight", float64(c.MaxInFlight)},
		{"--max-connections", float64(c.MaxConnections)},
	} {
		if n.value < 0 {
			errs = append(errs, fmt.Errorf("%s %v: must not be negative", n.flag, n.value))
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together: give both or neither"))
	}
	if (c.InferenceTLSCert == "") != (c.InferenceTLSKey == "") {
		errs = append(errs, errors.New("--inference-tls-cert and --inference-tls-key go together: give both or neither"))
	}
	if c.TLSClientCA != "" && c.TLSCert == "" {
		errs = append(errs, errors.New("--tls-client-ca needs --tls-cert and --tls-key: client certificates are checked over TLS"))
	}
	for _, d := range []struct {
		flag  string
		value time.Duration
	}{
		{"--read-header-timeout", c.ReadHeaderTimeout},
		{"--read-timeout", c.ReadTimeout},
		{"--write-timeout", c.WriteTimeout},
		{"--idle-timeout", c.IdleTimeout},
		{"--shutdown-timeout", c.ShutdownTimeout},
		{"--drain-delay", c.DrainDelay},
	} {
		if d.value < 0 {
			errs = append(errs, fmt.Errorf("%s %v: must not be negative", d.flag, d.value))
		}
	}
	// A response that waited the whole --timeout must still be writable.
	if c.WriteTimeout > 0 && c.WriteTimeout <= c.Timeout {
		errs = append(errs, fmt.Errorf("--write-timeout %v: must exceed --timeout %v, or be 0", c.WriteTimeout, c.Timeout))
	}
	if c.DemoPage {
		if err := demopage.CheckTraceURL(c.DemoTraceURL); err != nil {
			errs = append(errs, fmt.Errorf("--demo-trace-url: %w", err))
		}
	}
	errs = append(errs, c.validateHop()...)
	return errors.Join(errs...)
}
