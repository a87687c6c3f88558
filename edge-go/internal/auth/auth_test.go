package auth

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const (
	keyAll    = "k-all-0123456789"
	keyDigits = "k-digits-abcdef"
)

func testKeys(t *testing.T) *Keys {
	t.Helper()
	file := filepath.Join(t.TempDir(), "keys")
	data := "# gateway keys\n\n" + keyDigits + "  digits,mnist\n"
	if err := os.WriteFile(file, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := Load([]string{" " + keyAll + " ", ""}, file)
	if err != nil {
		t.Fatal(err)
	}
	if !k.Enabled() || k.Len() != 2 {
		t.Fatalf("Enabled %v, Len %d; want true, 2", k.Enabled(), k.Len())
	}
	return k
}

func idOf(key string) string {
	d := sha256.Sum256([]byte(key))
	return hex.EncodeToString(d[:4])
}

func TestCheck(t *testing.T) {
	k := testKeys(t)
	tests := []struct {
		name          string
		header, model string
		want          Outcome
		invalidToken  bool
		id            string
	}{
		{"missing", "", "digits", Unauthenticated, false, ""},
		{"wrong key", "Bearer nope", "digits", Unauthenticated, true, ""},
		{"right key", "Bearer " + keyAll, "digits", Allowed, false, idOf(keyAll)},
		{"lower-case scheme", "bearer " + keyAll, "digits", Allowed, false, idOf(keyAll)},
		{"upper-case scheme", "BEARER " + keyAll, "x", Allowed, false, idOf(keyAll)},
		{"extra spaces", "  Bearer   " + keyAll + " ", "x", Allowed, false, idOf(keyAll)},
		{"scoped, in scope", "Bearer " + keyDigits, "mnist", Allowed, false, idOf(keyDigits)},
		{"scoped, no model", "Bearer " + keyDigits, "", Allowed, false, idOf(keyDigits)},
		{"scoped, other model", "Bearer " + keyDigits, "resnet", Forbidden, false, idOf(keyDigits)},
		{"basic scheme", "Basic " + keyAll, "digits", Unauthenticated, false, ""},
		{"no token", "Bearer", "digits", Unauthenticated, false, ""},
		{"two tokens", "Bearer a b", "digits", Unauthenticated, false, ""},
		{"key without scheme", keyAll, "digits", Unauthenticated, false, ""},
		{"key prefix", "Bearer " + keyAll[:len(keyAll)-1], "digits", Unauthenticated, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := k.Check(tt.header, tt.model)
			if got := OutcomeOf(err); got != tt.want {
				t.Fatalf("outcome %v (%v), want %v", got, err, tt.want)
			}
			if id != tt.id {
				t.Errorf("key ID %q, want %q", id, tt.id)
			}
			if err == nil {
				return
			}
			e := err.(*Error)
			if e.InvalidToken != tt.invalidToken {
				t.Errorf("InvalidToken %v, want %v", e.InvalidToken, tt.invalidToken)
			}
			wantCode := codes.Unauthenticated
			if tt.want == Forbidden {
				wantCode = codes.PermissionDenied
			}
			if c := status.Code(err); c != wantCode {
				t.Errorf("code %v, want %v", c, wantCode)
			}
			for _, key := range []string{keyAll, keyDigits} {
				if strings.Contains(err.Error(), key) {
					t.Errorf("error %q shows the key", err)
				}
			}
		})
	}
}

func TestDisabled(t *testing.T) {
	for _, k := range []*Keys{nil, {}} {
		if k.Enabled() {
			t.Fatal("enabled without keys")
		}
		if id, err := k.Check("", "digits"); err != nil || id != "" {
			t.Fatalf("Check = %q, %v; want allowed", id, err)
		}
		next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
		if h := k.HTTP(next, HTTPConfig{}); h == nil {
			t.Fatal("nil handler")
		}
	}
	k, err := Load(nil, "")
	if err != nil || k.Enabled() {
		t.Fatalf("Load(nil, \"\") = %v, %v; want disabled", k, err)
	}
}

// TestLookupComparesEveryKey shows the timing-safe path: whichever key
// matches, first, last or none, every digest is compared.
func TestLookupComparesEveryKey(t *testing.T) {
	keys := []string{"a1", "b2", "c3", "d4", "e5"}
	k, err := Load(keys, "")
	if err != nil {
		t.Fatal(err)
	}
	var n int
	orig := constantTimeCompare
	constantTimeCompare = func(x, y []byte) int { n++; return orig(x, y) }
	t.Cleanup(func() { constantTimeCompare = orig })

	for i, key := range append(keys, "unknown") {
		n = 0
		got := k.lookup(sha256.Sum256([]byte(key)))
		want := i
		if key == "unknown" {
			want = -1
		}
		if got != want {
			t.Errorf("lookup(%s) = %d, want %d", key, got, want)
		}
		if n != len(keys) {
			t.Errorf("lookup(%s) compared %d digests, want all %d", key, n, len(keys))
		}
	}
}

func TestLoadErrors(t *testing.T) {
	secret := "s3cret-key"
	tests := []struct {
		name     string
		list     []string
		file     string // contents; "" for no file
		wantLine string // in the error
	}{
		{"three fields", nil, "# c\n" + secret + " digits extra\n", "line 2"},
		{"empty model", nil, "\n\n" + secret + " digits,,mnist\n", "line 3"},
		{"duplicate in file", nil, secret + "\n#\n" + secret + " digits\n", "line 3"},
		{"duplicate of list", []string{secret}, secret + "\n", "line 1"},
		{"comma in file key", nil, "ok\n" + secret + ",x\n", "line 2"},
		{"control char in list", []string{"a\x01" + secret}, "", "API key 1"},
		{"space in list key", []string{"good", "a " + secret}, "", "API key 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := ""
			if tt.file != "" {
				file = filepath.Join(t.TempDir(), "keys")
				if err := os.WriteFile(file, []byte(tt.file), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Load(tt.list, file)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.wantLine) {
				t.Errorf("error %q does not name %q", err, tt.wantLine)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q shows the key", err)
			}
		})
	}
	if _, err := Load(nil, filepath.Join(t.TempDir(), "absent")); err == nil || !strings.Contains(err.Error(), "absent") {
		t.Errorf("missing file: error %v does not name it", err)
	}
}

func TestHTTP(t *testing.T) {
	k := testKeys(t)
	var refused []string
	h := k.HTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := KeyID(r.Context())
		_, _ = w.Write([]byte("id=" + id))
	}), HTTPConfig{Refused: func(_ *http.Request, model string, o Outcome) {
		refused = append(refused, model+":"+o.String())
	}})

	tests := []struct {
		name, path, header string
		status             int
		wwwAuth, body      string
	}{
		{"missing", "/v2/models/digits/infer", "", 401, "Bearer", "missing API key"},
		{"wrong", "/v2/models/digits/infer", "Bearer nope", 401, `Bearer error="invalid_token"`, "invalid API key"},
		{"basic", "/v2/models/digits/infer", "Basic dTpw", 401, "Bearer", "malformed"},
		{"right", "/v2/models/digits/infer", "Bearer " + keyAll, 200, "", "id=" + idOf(keyAll)},
		{"scoped in", "/v2/models/digits/versions/1/infer", "Bearer " + keyDigits, 200, "", "id=" + idOf(keyDigits)},
		{"scoped out", "/v2/models/resnet/infer", "Bearer " + keyDigits, 403, `Bearer error="insufficient_scope"`, `may not call model \"resnet\"`},
		{"health open", "/v2/health/ready", "", 200, "", "id="},
		{"server metadata needs a key", "/v2", "", 401, "Bearer", "missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("POST", tt.path, nil)
			if tt.header != "" {
				req.Header.Set("Authorization", tt.header)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d (%s)", rec.Code, tt.status, rec.Body)
			}
			if got := rec.Header().Get("WWW-Authenticate"); got != tt.wwwAuth {
				t.Errorf("WWW-Authenticate %q, want %q", got, tt.wwwAuth)
			}
			if !strings.Contains(rec.Body.String(), tt.body) {
				t.Errorf("body %q lacks %q", rec.Body, tt.body)
			}
			if tt.status != 200 {
				if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q", ct)
				}
				var body struct{ Error string }
				if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error == "" {
					t.Errorf("body %q is not {\"error\": ...}: %v", rec.Body, err)
				}
			}
		})
	}
	want := "digits:unauthenticated digits:unauthenticated digits:unauthenticated resnet:forbidden :unauthenticated"
	if got := strings.Join(refused, " "); got != want {
		t.Errorf("refusals %q, want %q", got, want)
	}
}

func TestHTTPWriteError(t *testing.T) {
	k := testKeys(t)
	var got error
	h := k.HTTP(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), HTTPConfig{
		WriteError: func(w http.ResponseWriter, _ *http.Request, err error) {
			got = err
			w.WriteHeader(499)
		},
	})
	req := httptest.NewRequest("POST", "/v2/models/digits/infer", nil)
	req.Header.Set("Authorization", "Bearer nope")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 499 || status.Code(got) != codes.Unauthenticated {
		t.Errorf("WriteError got %v, status %d; want UNAUTHENTICATED, 499", got, rec.Code)
	}
	if a := rec.Header().Get("WWW-Authenticate"); a != `Bearer error="invalid_token"` {
		t.Errorf("WWW-Authenticate %q set before WriteError", a)
	}
}

// TestHTTPHeaderCasing sends a raw request whose header name is lower case,
// as HTTP/2 clients and some proxies do.
func TestHTTPHeaderCasing(t *testing.T) {
	k := testKeys(t)
	h := k.HTTP(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), HTTPConfig{})
	for _, name := range []string{"authorization", "AUTHORIZATION", "Authorization"} {
		raw := "GET /v2 HTTP/1.1\r\nHost: x\r\n" + name + ": bearer " + keyAll + "\r\n\r\n"
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			t.Errorf("%s: status %d, want 200", name, rec.Code)
		}
	}
}

func TestModelFromPath(t *testing.T) {
	for path, want := range map[string]string{
		"/v2/models/digits/infer":            "digits",
		"/v2/models/digits/versions/2/infer": "digits",
		"/v2/models/digits":                  "digits",
		"/v2/models/digits/ready":            "digits",
		"/v2":                                "",
		"/v2/health/live":                    "",
		"/metrics":                           "",
	} {
		if got := ModelFromPath(path); got != want {
			t.Errorf("ModelFromPath(%q) = %q, want %q", path, got, want)
		}
	}
}

type modelReq struct{ model string }

func (r modelReq) GetModelName() string { return r.model }

func TestUnaryServerInterceptor(t *testing.T) {
	k := testKeys(t)
	var refused []string
	icpt := k.UnaryServerInterceptor(GRPCConfig{Refused: func(_ context.Context, model string, o Outcome) {
		refused = append(refused, model+":"+o.String())
	}})
	handler := func(ctx context.Context, _ any) (any, error) {
		id, _ := KeyID(ctx)
		return id, nil
	}
	infer := "/inference.GRPCInferenceService/ModelInfer"
	tests := []struct {
		name, method string
		md           metadata.MD
		model        string
		code         codes.Code
		id           string
	}{
		{"missing", infer, nil, "digits", codes.Unauthenticated, ""},
		{"wrong", infer, metadata.Pairs("authorization", "Bearer nope"), "digits", codes.Unauthenticated, ""},
		{"basic", infer, metadata.Pairs("authorization", "Basic "+keyAll), "digits", codes.Unauthenticated, ""},
		{"right", infer, metadata.Pairs("authorization", "Bearer "+keyAll), "digits", codes.OK, idOf(keyAll)},
		{"upper-case key", infer, metadata.MD{"Authorization": {"Bearer " + keyAll}}, "digits", codes.OK, idOf(keyAll)},
		{"scoped in", infer, metadata.Pairs("authorization", "Bearer "+keyDigits), "digits", codes.OK, idOf(keyDigits)},
		{"scoped out", infer, metadata.Pairs("authorization", "Bearer "+keyDigits), "resnet", codes.PermissionDenied, ""},
		{"grpc health", "/grpc.health.v1.Health/Check", nil, "", codes.OK, ""},
		{"oip live", "/inference.GRPCInferenceService/ServerLive", nil, "", codes.OK, ""},
		{"oip model ready", "/inference.GRPCInferenceService/ModelReady", nil, "digits", codes.Unauthenticated, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.md != nil {
				ctx = metadata.NewIncomingContext(ctx, tt.md)
			}
			got, err := icpt(ctx, modelReq{tt.model}, &grpc.UnaryServerInfo{FullMethod: tt.method}, handler)
			if c := status.Code(err); c != tt.code {
				t.Fatalf("code %v (%v), want %v", c, err, tt.code)
			}
			if err == nil && got.(string) != tt.id {
				t.Errorf("key ID %q, want %q", got, tt.id)
			}
		})
	}
	want := "digits:unauthenticated digits:unauthenticated digits:unauthenticated resnet:forbidden digits:unauthenticated"
	if got := strings.Join(refused, " "); got != want {
		t.Errorf("refusals %q, want %q", got, want)
	}
}

type stream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s stream) Context() context.Context { return s.ctx }

func TestStreamServerInterceptor(t *testing.T) {
	k := testKeys(t)
	icpt := k.StreamServerInterceptor(GRPCConfig{})
	info := &grpc.StreamServerInfo{FullMethod: "/inference.GRPCInferenceService/ModelStreamInfer"}
	var id string
	handler := func(_ any, ss grpc.ServerStream) error { id, _ = KeyID(ss.Context()); return nil }

	if err := icpt(nil, stream{ctx: context.Background()}, info, handler); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no key: %v, want UNAUTHENTICATED", err)
	}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+keyDigits))
	if err := icpt(nil, stream{ctx: ctx}, info, handler); err != nil || id != idOf(keyDigits) {
		t.Errorf("scoped key: %v, id %q; want allowed with %q", err, id, idOf(keyDigits))
	}
}
