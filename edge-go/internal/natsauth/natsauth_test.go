package natsauth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/tandem-ml/tandem/edge-go/internal/tlsconf"
	"github.com/tandem-ml/tandem/edge-go/internal/tlsconf/tlstest"
)

const prefix = "oip.v2"

var passwords = map[string]string{
	UserGateway:  `gw-"quoted"\back$slash`, // exercises the config quoting
	UserWorker:   "wk-secret",
	UserObserver: "ob-secret",
}

// waitBound bounds waits for the server's answers; a test never asserts
// how long anything took.
const waitBound = 10 * time.Second

func startServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.Port = "127.0.0.1", -1
	opts.NoLog, opts.NoSigs = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(waitBound) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(s.Shutdown)
	return s
}

// startStackServer starts a server from ServerConfig, loaded as a real
// config file.
func startStackServer(t *testing.T) *server.Server {
	t.Helper()
	conf, err := ServerConfig(prefix, passwords)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(file)
	if err != nil {
		t.Fatalf("ProcessConfigFile: %v\n%s", err, conf)
	}
	if len(opts.Users) != 3 || opts.NoAuthUser != "" {
		t.Fatalf("%d users, no_auth_user %q; want 3, none", len(opts.Users), opts.NoAuthUser)
	}
	return startServer(t, opts)
}

// connect connects as cfg, sending async errors (permission violations)
// to the returned channel.
func connect(t *testing.T, url string, cfg Config) (*nats.Conn, <-chan error, error) {
	t.Helper()
	opts, err := Options(cfg)
	if err != nil {
		t.Fatal(err)
	}
	asyncErrs := make(chan error, 16)
	opts = append(opts, nats.NoReconnect(), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		asyncErrs <- err
	}))
	nc, err := nats.Connect(url, opts...)
	if err == nil {
		t.Cleanup(nc.Close)
	}
	return nc, asyncErrs, err
}

func as(user string) Config { return Config{User: user, Password: passwords[user]} }

func TestServerConfigRefusesStrangers(t *testing.T) {
	s := startStackServer(t)
	for name, cfg := range map[string]Config{
		"anonymous":      {},
		"wrong password": {User: UserWorker, Password: "nope"},
		"unknown user":   {User: "mallory", Password: "wk-secret"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := connect(t, s.ClientURL(), cfg)
			if !errors.Is(err, nats.ErrAuthorization) {
				t.Errorf("connect: %v, want an authorization violation", err)
			}
		})
	}
}

func TestServerConfigPermissions(t *testing.T) {
	s := startStackServer(t)
	gw, gwErrs, err := connect(t, s.ClientURL(), as(UserGateway))
	if err != nil {
		t.Fatal(err)
	}
	wk, _, err := connect(t, s.ClientURL(), as(UserWorker))
	if err != nil {
		t.Fatal(err)
	}
	ob, _, err := connect(t, s.ClientURL(), as(UserObserver))
	if err != nil {
		t.Fatal(err)
	}

	// The worker serves requests and $SRV pings; the gateway and the
	// observer get answers through their inboxes.
	if _, err := wk.Subscribe(prefix+".models.digits", func(m *nats.Msg) { _ = m.Respond([]byte("y")) }); err != nil {
		t.Fatal(err)
	}
	if _, err := wk.Subscribe("$SRV.STATS", func(m *nats.Msg) { _ = m.Respond([]byte("stats")) }); err != nil {
		t.Fatal(err)
	}
	if err := wk.Flush(); err != nil {
		t.Fatal(err)
	}
	if m, err := gw.Request(prefix+".models.digits", []byte("x"), waitBound); err != nil || string(m.Data) != "y" {
		t.Fatalf("gateway request: %v, %v", m, err)
	}
	if m, err := ob.Request("$SRV.STATS", nil, waitBound); err != nil || string(m.Data) != "stats" {
		t.Fatalf("observer $SRV.STATS: %v, %v", m, err)
	}

	// The gateway cannot take requests meant for workers.
	if _, err := gw.SubscribeSync(prefix + ".models.>"); err != nil {
		t.Fatal(err)
	}
	_ = gw.Flush()
	select {
	case err := <-gwErrs:
		if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), prefix+".models.>") {
			t.Errorf("gateway subscribe: %v, want a permissions violation naming the subject", err)
		}
	case <-time.After(waitBound):
		t.Error("the gateway subscribed to worker requests unrefused")
	}

	// Neither can a worker publish requests, only reply.
	wkErrs := make(chan error, 1)
	wk.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { wkErrs <- err })
	_ = wk.Publish(prefix+".models.digits", []byte("x"))
	_ = wk.Flush()
	select {
	case err := <-wkErrs:
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Errorf("worker publish: %v, want a permissions violation", err)
		}
	case <-time.After(waitBound):
		t.Error("a worker published a request unrefused")
	}
}

func TestNKey(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	seedFile := filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, &server.Options{Nkeys: []*server.NkeyUser{{Nkey: pub}}})

	if _, _, err := connect(t, s.ClientURL(), Config{NKeyFile: seedFile}); err != nil {
		t.Errorf("nkey connect: %v", err)
	}
	if _, _, err := connect(t, s.ClientURL(), Config{}); !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("anonymous connect: %v, want an authorization violation", err)
	}
	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	otherFile := filepath.Join(t.TempDir(), "other.nk")
	if err := os.WriteFile(otherFile, otherSeed, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := connect(t, s.ClientURL(), Config{NKeyFile: otherFile}); !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("unknown nkey connect: %v, want an authorization violation", err)
	}
}

func TestTLS(t *testing.T) {
	pki := tlstest.New(t)
	tc, err := tlsconf.Server(pki.ServerCert, pki.ServerKey, pki.CA)
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, &server.Options{TLS: true, TLSVerify: true, TLSConfig: tc, Username: "u", Password: "p"})
	url := "tls://localhost:" + strings.TrimPrefix(s.Addr().String(), "127.0.0.1:")

	mTLS := Config{User: "u", Password: "p", TLSCA: pki.CA, TLSCert: pki.ClientCert, TLSKey: pki.ClientKey}
	if _, _, err := connect(t, url, mTLS); err != nil {
		t.Errorf("mTLS connect: %v", err)
	}
	noCert := Config{User: "u", Password: "p", TLSCA: pki.CA}
	if _, _, err := connect(t, url, noCert); err == nil {
		t.Error("connected without the client certificate the server requires")
	}
	wrongCA := mTLS
	wrongCA.TLSCA = tlstest.New(t).CA
	if _, _, err := connect(t, url, wrongCA); err == nil {
		t.Error("connected to a server signed by an untrusted CA")
	}
}

func TestOptionsErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	garbage := write("garbage", "not a key")
	acct, _ := nkeys.CreateAccount()
	acctSeed, _ := acct.Seed()
	accountSeed := write("account.nk", string(acctSeed))
	missing := filepath.Join(dir, "missing")

	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"creds and nkey", Config{CredsFile: garbage, NKeyFile: garbage}, "not both"},
		{"user and creds", Config{User: "u", Password: "p", CredsFile: garbage}, "not both"},
		{"password and nkey", Config{Password: "p", NKeyFile: garbage}, "not both"},
		{"user without password", Config{User: "u"}, "no password"},
		{"password without user", Config{Password: "p"}, "without a user"},
		{"nkey missing", Config{NKeyFile: missing}, missing},
		{"nkey garbage", Config{NKeyFile: garbage}, garbage},
		{"nkey of an account", Config{NKeyFile: accountSeed}, accountSeed},
		{"creds missing", Config{CredsFile: missing}, missing},
		{"creds garbage", Config{CredsFile: garbage}, garbage},
		{"TLS CA missing", Config{TLSCA: missing}, missing},
		{"TLS cert without key", Config{TLSCert: garbage}, "both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Options(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Options: %v, want an error with %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "p\"") {
				t.Errorf("error %q shows a password", err)
			}
		})
	}
}

func TestOptionsCreds(t *testing.T) {
	acct, _ := nkeys.CreateAccount()
	user, _ := nkeys.CreateUser()
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	token, err := jwt.NewUserClaims(pub).Encode(acct)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := jwt.FormatUserConfig(token, seed)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "user.creds")
	if err := os.WriteFile(file, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := Options(Config{CredsFile: file})
	if err != nil || len(opts) != 1 {
		t.Fatalf("Options: %d options, %v; want 1, nil", len(opts), err)
	}
	var o nats.Options
	if err := opts[0](&o); err != nil {
		t.Fatal(err)
	}
	if o.UserJWT == nil || o.SignatureCB == nil {
		t.Error("the creds option sets no JWT or signer")
	}
}

func TestOptionsNone(t *testing.T) {
	opts, err := Options(Config{})
	if err != nil || len(opts) != 0 {
		t.Errorf("zero Config: %d options, %v; want none", len(opts), err)
	}
}

func TestServerConfigErrors(t *testing.T) {
	full := func(change func(map[string]string)) map[string]string {
		m := map[string]string{UserGateway: "a", UserWorker: "b", UserObserver: "c"}
		change(m)
		return m
	}
	tests := []struct {
		name, prefix string
		passwords    map[string]string
		want         string
	}{
		{"missing password", prefix, full(func(m map[string]string) { delete(m, UserObserver) }), `"observer"`},
		{"empty password", prefix, full(func(m map[string]string) { m[UserWorker] = "" }), `"worker"`},
		{"unknown user", prefix, full(func(m map[string]string) { m["root"] = "x" }), `"root"`},
		{"control character", prefix, full(func(m map[string]string) { m[UserGateway] = "a\nb" }), "control"},
		{"wildcard prefix", "oip.*", full(func(map[string]string) {}), "oip.*"},
		{"empty token", "oip..v2", full(func(map[string]string) {}), "oip..v2"},
		{"empty prefix", "", full(func(map[string]string) {}), "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ServerConfig(tt.prefix, tt.passwords)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ServerConfig: %v, want an error with %s", err, tt.want)
			}
		})
	}
}

// TestServerConfigOtherPrefix checks that the prefix is what is allowed.
func TestServerConfigOtherPrefix(t *testing.T) {
	conf, err := ServerConfig("acme.infer", passwords)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(conf, `"acme.infer.>"`) || strings.Contains(conf, "oip.v2") {
		t.Errorf("config does not use the prefix:\n%s", conf)
	}
}
