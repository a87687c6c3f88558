// Package natsserver runs a nats-server inside the gateway's process, so that
// `--transport nats` needs nothing else: Python workers connect to it over
// TCP, and the gateway's own client connects in process, without a socket.
package natsserver

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/tandem-ml/tandem/edge-go/internal/natsauth"
)

// MaxPayloadLimit is the largest max_payload nats-server accepts without
// warning that it is too high (8 MiB): NATS is built for many small
// messages, and one big message holds up every other on its connection.
const MaxPayloadLimit = server.MAX_PAYLOAD_MAX_SIZE

// readyTimeout bounds the wait for the server to accept connections,
// checked every readyPoll.
const (
	readyTimeout = 10 * time.Second
	readyPoll    = 20 * time.Millisecond
)

// ErrOpenListener is why Start refuses a server that would listen beyond
// loopback and let anyone in: anonymous clients could then read every
// request and answer as a worker.
var ErrOpenListener = errors.New("the embedded nats-server would listen beyond loopback without authentication")

// Config says where the server listens and what it enforces.
type Config struct {
	// ConfigFile, when set, is a nats-server config file (authorization,
	// accounts, permissions, tls, ...). Listen, MonitorAddr and MaxPayload
	// below override what it says of the same.
	ConfigFile string
	// Listen is the host:port of the client listener; port 0 picks a free
	// port.
	Listen string
	// MonitorAddr is the host:port of the HTTP monitoring endpoints
	// (/varz, /connz, /healthz); empty disables them, port 0 picks one.
	MonitorAddr string
	// MaxPayload is the largest message the server accepts, in bytes.
	MaxPayload int
	// Logger receives the server's log, at the matching levels.
	Logger *slog.Logger
}

// Server is a running embedded nats-server.
type Server struct {
	*server.Server
}

// Start starts the server and waits until it accepts connections. It
// refuses (ErrOpenListener) to listen beyond loopback unless the config
// file makes clients authenticate (natsauth.RequiresAuth).
func Start(cfg Config) (*Server, error) {
	host, port, err := splitAddr(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("nats listen address: %w", err)
	}
	if cfg.MaxPayload <= 0 || cfg.MaxPayload > MaxPayloadLimit {
		return nil, fmt.Errorf("nats max payload %d: must be between 1 and %d", cfg.MaxPayload, MaxPayloadLimit)
	}
	opts := &server.Options{}
	if cfg.ConfigFile != "" {
		if opts, err = server.ProcessConfigFile(cfg.ConfigFile); err != nil {
			return nil, fmt.Errorf("nats server config: %w", err)
		}
	}
	if !loopback(host) && !natsauth.RequiresAuth(opts) {
		return nil, fmt.Errorf("%w (listen %s)", ErrOpenListener, cfg.Listen)
	}
	if opts.ServerName == "" {
		opts.ServerName = "tandem-gateway"
	}
	opts.Host, opts.Port = host, port
	opts.MaxPayload = int32(cfg.MaxPayload)
	// A payload up to the limit must fit in a client's pending buffer.
	opts.MaxPending = max(opts.MaxPending, server.MAX_PENDING_SIZE, 2*int64(cfg.MaxPayload))
	// The gateway owns the signals and shuts the server down itself.
	opts.NoSigs = true
	opts.HTTPHost, opts.HTTPPort = "", 0
	if cfg.MonitorAddr != "" {
		if opts.HTTPHost, opts.HTTPPort, err = splitAddr(cfg.MonitorAddr); err != nil {
			return nil, fmt.Errorf("nats monitor address: %w", err)
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The server reports a listener it cannot open as fatal, in its log
	// only: watch for that rather than wait out readyTimeout.
	fatal := make(chan string, 1)
	ns.SetLogger(logger{log: log.With("component", "nats-server"), fatal: fatal}, false, false)
	ns.Start()
	deadline := time.Now().Add(readyTimeout)
	for !ns.ReadyForConnections(readyPoll) {
		select {
		case msg := <-fatal:
			ns.Shutdown()
			return nil, fmt.Errorf("nats server: %s", msg)
		default:
		}
		if time.Now().After(deadline) {
			ns.Shutdown()
			return nil, fmt.Errorf("nats server: not accepting connections on %s after %v", cfg.Listen, readyTimeout)
		}
	}
	return &Server{ns}, nil
}

// Stop shuts the server down and waits until it has: clients are
// disconnected (workers then try to reconnect).
func (s *Server) Stop() {
	s.Shutdown()
	s.WaitForShutdown()
}

// loopback reports whether host (as splitAddr returns it) reaches this
// machine only. A name other than localhost may resolve anywhere, and so
// counts as beyond.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// splitAddr splits host:port; port 0 becomes nats-server's "any free port",
// since to nats-server 0 means its default port.
func splitAddr(addr string) (string, int, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, errors.New("port " + strconv.Quote(portText) + " is not a number from 0 to 65535")
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// logger writes the server's log through slog, and passes on the first
// fatal error.
type logger struct {
	log   *slog.Logger
	fatal chan<- string
}

func (l logger) Noticef(format string, v ...any) { l.log.Info(fmt.Sprintf(format, v...)) }
func (l logger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l logger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error(msg)
	select {
	case l.fatal <- msg:
	default:
	}
}
func (l logger) Errorf(format string, v ...any) { l.log.Error(fmt.Sprintf(format, v...)) }
func (l logger) Debugf(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l logger) Tracef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
