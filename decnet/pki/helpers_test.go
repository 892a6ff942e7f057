package pki_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/decnet-swarm/sdk/decnet/pki"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newCA returns a CA whose clock is at (now if zero: time.Now).
func newCA(t *testing.T, at time.Time) *pki.CA {
	t.Helper()
	var now func() time.Time
	if !at.IsZero() {
		now = func() time.Time { return at }
	}
	ca, err := pki.NewCA(now)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func issue(t *testing.T, ca *pki.CA, name string, role pki.Role, sans ...string) *pki.Bundle {
	t.Helper()
	b, err := ca.NewBundle(pki.IssueRequest{Name: name, Role: role, SANs: sans})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeBundle writes b to a fresh directory and returns it.
func writeBundle(t *testing.T, b *pki.Bundle) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bundle")
	if err := pki.WriteBundle(dir, b); err != nil {
		t.Fatal(err)
	}
	return dir
}

// recorder is a slog handler that keeps record messages.
type recorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Message)
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }
func (r *recorder) count(msg string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

// server is an HTTPS server on loopback using ServerTLSConfig(dir).
type server struct {
	addr string
	hits chan *http.Request // one per request that reached the handler
}

func startServer(t *testing.T, dir string, opts pki.ServerOptions, h http.HandlerFunc) *server {
	t.Helper()
	cfg, err := pki.ServerTLSConfig(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{addr: ln.Addr().String(), hits: make(chan *http.Request, 100)}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.hits <- r
			h(w, r)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	srv.ErrorLog = discardLog()
	srv.TLSConfig = cfg
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.ServeTLS(ln, "", "")
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return s
}

// client returns an http.Client presenting b and expecting expect.
func client(t *testing.T, b *pki.Bundle, expect pki.ExpectPeer) *http.Client {
	t.Helper()
	cfg, err := pki.ClientTLSConfig(b, expect)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func get(c *http.Client, addr string) (int, string, error) {
	resp, err := c.Get("https://" + addr + "/")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// handshake dials addr and returns the server's leaf fingerprint.
func handshake(t *testing.T, addr string, cfg *tls.Config) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer conn.Close()
	return pki.Fingerprint(conn.ConnectionState().PeerCertificates[0])
}

// masterOnly authorizes RoleMaster and answers with the peer's CN, or 403.
func masterOnly(errs chan<- error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := pki.Authorize(r.TLS, pki.RoleMaster)
		if errs != nil {
			errs <- err
		}
		if err != nil {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		_, _ = io.WriteString(w, p.CN)
	}
}

func noHits(t *testing.T, s *server) {
	t.Helper()
	select {
	case r := <-s.hits:
		t.Fatalf("request %s %s reached the handler", r.Method, r.URL)
	default:
	}
}

func isAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

func discardLog() *log.Logger { return log.New(io.Discard, "", 0) }
