package pki_test

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/pki"
)

// swarm is one CA with a master and a worker identity; the worker serves.
type swarm struct {
	ca             *pki.CA
	master, worker *pki.Bundle
	workerDir      string
}

func newSwarm(t *testing.T) swarm {
	t.Helper()
	ca := newCA(t, time.Time{})
	s := swarm{
		ca:     ca,
		master: issue(t, ca, pki.MasterName, pki.RoleMaster),
		worker: issue(t, ca, "worker-1", pki.RoleWorker, "127.0.0.1"),
	}
	s.workerDir = writeBundle(t, s.worker)
	return s
}

func TestGoodPairHandshakeAndAuthorize(t *testing.T) {
	sw := newSwarm(t)
	errs := make(chan error, 10)
	srv := startServer(t, sw.workerDir, pki.ServerOptions{}, masterOnly(errs))

	for _, pin := range []string{"", sw.worker.Fingerprint(), strings.ToUpper(sw.worker.Fingerprint())} {
		c := client(t, sw.master, pki.ExpectPeer{Role: pki.RoleWorker, Fingerprint: pin})
		code, body, err := get(c, srv.addr)
		if err != nil {
			t.Fatalf("pin %q: %v", pin, err)
		}
		if code != http.StatusOK || body != pki.MasterName {
			t.Fatalf("pin %q: got %d %q, want 200 %q", pin, code, body, pki.MasterName)
		}
		if err := <-errs; err != nil {
			t.Fatalf("Authorize: %v", err)
		}
		r := <-srv.hits
		if r.TLS.Version != tls.VersionTLS13 {
			t.Errorf("negotiated version %#x, want TLS 1.3", r.TLS.Version)
		}
		p, err := pki.PeerFromRequest(r)
		if err != nil || p.Role != pki.RoleMaster || p.Fingerprint != sw.master.Fingerprint() {
			t.Errorf("PeerFromRequest = %+v, %v", p, err)
		}
	}
}

func TestWorkerCertReachesHandlerAndIsForbidden(t *testing.T) {
	sw := newSwarm(t)
	other := issue(t, sw.ca, "worker-2", pki.RoleWorker)
	errs := make(chan error, 1)
	srv := startServer(t, sw.workerDir, pki.ServerOptions{}, masterOnly(errs))

	code, _, err := get(client(t, other, pki.ExpectPeer{Role: pki.RoleWorker}), srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	if code != http.StatusForbidden {
		t.Fatalf("status %d, want 403", code)
	}
	aerr := <-errs
	if !errors.Is(aerr, decnet.ErrUnauthorized) {
		t.Fatalf("Authorize error %v, want ErrUnauthorized", aerr)
	}
	r := <-srv.hits
	p, _ := pki.Authorize(r.TLS, pki.RoleMaster)
	if p.CN != "worker-2" || p.Role != pki.RoleWorker {
		t.Errorf("refused peer reported as %+v", p)
	}
	if _, err := pki.Authorize(r.TLS, pki.RoleWorker, pki.RoleMaster); err != nil {
		t.Errorf("worker allowed explicitly: %v", err)
	}
	if _, err := pki.Authorize(r.TLS); !errors.Is(err, decnet.ErrUnauthorized) {
		t.Errorf("no role allowed: %v, want ErrUnauthorized", err)
	}
	if _, err := pki.Authorize(nil, pki.RoleMaster); !errors.Is(err, decnet.ErrUnauthorized) {
		t.Errorf("nil connection state: %v, want ErrUnauthorized", err)
	}
}

func TestAuthorizePinned(t *testing.T) {
	sw := newSwarm(t)
	otherMaster := issue(t, sw.ca, pki.MasterName, pki.RoleMaster)
	pin := sw.master.Fingerprint()
	results := make(chan error, 2)
	srv := startServer(t, sw.workerDir, pki.ServerOptions{}, func(w http.ResponseWriter, r *http.Request) {
		_, err := pki.AuthorizePinned(r.TLS, pin, pki.RoleMaster)
		results <- err
		if err != nil {
			w.WriteHeader(http.StatusForbidden)
		}
	})
	if code, _, err := get(client(t, sw.master, pki.ExpectPeer{Role: pki.RoleWorker}), srv.addr); err != nil || code != 200 {
		t.Fatalf("pinned master: %d %v", code, err)
	}
	if err := <-results; err != nil {
		t.Fatalf("pinned master refused: %v", err)
	}
	if code, _, err := get(client(t, otherMaster, pki.ExpectPeer{Role: pki.RoleWorker}), srv.addr); err != nil || code != 403 {
		t.Fatalf("other master: %d %v, want 403", code, err)
	}
	err := <-results
	var fm *pki.FingerprintMismatchError
	if !errors.Is(err, decnet.ErrFingerprintMismatch) || !errors.As(err, &fm) || fm.Got != otherMaster.Fingerprint() {
		t.Fatalf("other master: %v, want ErrFingerprintMismatch", err)
	}
}

func TestImpostorCARejectedAtHandshake(t *testing.T) {
	sw := newSwarm(t)
	impostorCA := newCA(t, time.Time{})
	impostorMaster := issue(t, impostorCA, pki.MasterName, pki.RoleMaster)
	impostorWorker := issue(t, impostorCA, "worker-1", pki.RoleWorker, "127.0.0.1")

	t.Run("client from another CA", func(t *testing.T) {
		srv := startServer(t, sw.workerDir, pki.ServerOptions{}, masterOnly(nil))
		// The impostor trusts our CA so that only the server's check matters.
		b := *impostorMaster
		b.CA = sw.worker.CA
		cfg, err := pki.ClientTLSConfig(&b, pki.ExpectPeer{Role: pki.RoleWorker})
		if err == nil {
			t.Fatal("ClientTLSConfig accepted a bundle whose cert is not signed by its CA")
		}
		// Build the impostor's config by hand: its own cert, our CA's checks.
		good, err := pki.ClientTLSConfig(sw.master, pki.ExpectPeer{Role: pki.RoleWorker})
		if err != nil {
			t.Fatal(err)
		}
		cfg = good.Clone()
		cfg.Certificates = []tls.Certificate{impostorMaster.TLSCertificate()}
		tr := &http.Transport{TLSClientConfig: cfg}
		defer tr.CloseIdleConnections()
		if _, _, err := get(&http.Client{Transport: tr, Timeout: 10 * time.Second}, srv.addr); err == nil {
			t.Fatal("request with a certificate from another CA succeeded")
		}
		noHits(t, srv)
	})

	t.Run("server from another CA", func(t *testing.T) {
		dir := writeBundle(t, impostorWorker)
		srv := startServer(t, dir, pki.ServerOptions{}, masterOnly(nil))
		_, _, err := get(client(t, sw.master, pki.ExpectPeer{Role: pki.RoleWorker}), srv.addr)
		if !errors.Is(err, decnet.ErrUnauthorized) {
			t.Fatalf("err = %v, want ErrUnauthorized", err)
		}
		if errors.Is(err, decnet.ErrFingerprintMismatch) {
			t.Fatalf("another CA reported as a fingerprint mismatch: %v", err)
		}
		noHits(t, srv)
	})
}

func TestPinMismatchThroughHTTPClient(t *testing.T) {
	sw := newSwarm(t)
	srv := startServer(t, sw.workerDir, pki.ServerOptions{}, masterOnly(nil))
	// A CA-signed worker, but not the one pinned.
	wrongPin := issue(t, sw.ca, "worker-9", pki.RoleWorker).Fingerprint()
	_, _, err := get(client(t, sw.master, pki.ExpectPeer{Role: pki.RoleWorker, Fingerprint: wrongPin}), srv.addr)
	if !errors.Is(err, decnet.ErrFingerprintMismatch) {
		t.Fatalf("err = %v, want ErrFingerprintMismatch", err)
	}
	var fm *pki.FingerprintMismatchError
	if !errors.As(err, &fm) || fm.Got != sw.worker.Fingerprint() || fm.Want != wrongPin {
		t.Fatalf("mismatch detail = %+v", fm)
	}
	noHits(t, srv)
}

func TestWrongServerRoleRejected(t *testing.T) {
	sw := newSwarm(t)
	srv := startServer(t, sw.workerDir, pki.ServerOptions{}, masterOnly(nil))
	_, _, err := get(client(t, sw.master, pki.ExpectPeer{Role: pki.RoleMaster}), srv.addr)
	if !errors.Is(err, decnet.ErrUnauthorized) {
		t.Fatalf("err = %v, want ErrUnauthorized", err)
	}
	noHits(t, srv)
}

func TestClientTLSConfigRejectsBadExpectations(t *testing.T) {
	sw := newSwarm(t)
	for _, e := range []pki.ExpectPeer{{}, {Role: "decnet-admin"}, {Role: pki.RoleWorker, Fingerprint: "abc"}} {
		if _, err := pki.ClientTLSConfig(sw.master, e); !errors.Is(err, decnet.ErrInvalid) {
			t.Errorf("ClientTLSConfig(%+v) = %v, want ErrInvalid", e, err)
		}
	}
}

func TestTLS12ClientRefused(t *testing.T) {
	sw := newSwarm(t)
	srv := startServer(t, sw.workerDir, pki.ServerOptions{}, masterOnly(nil))
	cfg, err := pki.ClientTLSConfig(sw.master, pki.ExpectPeer{Role: pki.RoleWorker})
	if err != nil {
		t.Fatal(err)
	}
	cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	conn, err := tls.Dial("tcp", srv.addr, cfg)
	if err == nil {
		conn.Close()
		t.Fatal("TLS 1.2 handshake succeeded")
	}
	noHits(t, srv)
}

func TestExpiredLeafRefused(t *testing.T) {
	ca := newCA(t, time.Now().Add(-2*365*24*time.Hour)) // leaves expired a year ago
	worker := issue(t, newCAFromCert(t, ca), "worker-1", pki.RoleWorker)
	expiredMaster := issue(t, ca, pki.MasterName, pki.RoleMaster)
	dir := writeBundle(t, worker)
	srv := startServer(t, dir, pki.ServerOptions{}, masterOnly(nil))

	t.Run("expired client", func(t *testing.T) {
		good, err := pki.ClientTLSConfig(worker, pki.ExpectPeer{Role: pki.RoleWorker})
		if err != nil {
			t.Fatal(err)
		}
		cfg := good.Clone()
		cfg.Certificates = []tls.Certificate{expiredMaster.TLSCertificate()}
		tr := &http.Transport{TLSClientConfig: cfg}
		defer tr.CloseIdleConnections()
		if _, _, err := get(&http.Client{Transport: tr, Timeout: 10 * time.Second}, srv.addr); err == nil {
			t.Fatal("expired client certificate accepted")
		}
		noHits(t, srv)
	})
	t.Run("expired server", func(t *testing.T) {
		// The worker's leaf is valid for a year; seen from two years on, it is expired.
		later := func() time.Time { return time.Now().Add(2 * 365 * 24 * time.Hour) }
		master := issue(t, newCAFromCert(t, ca), pki.MasterName, pki.RoleMaster)
		_, _, err := get(client(t, master, pki.ExpectPeer{Role: pki.RoleWorker, Time: later}), srv.addr)
		if !errors.Is(err, decnet.ErrUnauthorized) {
			t.Fatalf("err = %v, want ErrUnauthorized", err)
		}
		noHits(t, srv)
	})
}

// newCAFromCert returns ca with its clock reset to time.Now.
func newCAFromCert(t *testing.T, ca *pki.CA) *pki.CA {
	t.Helper()
	return &pki.CA{Cert: ca.Cert, Key: ca.Key}
}

func TestHotReload(t *testing.T) {
	sw := newSwarm(t)
	rec := &recorder{}
	srv := startServer(t, sw.workerDir, pki.ServerOptions{Logger: slog.New(rec)}, masterOnly(nil))
	cfg, err := pki.ClientTLSConfig(sw.master, pki.ExpectPeer{Role: pki.RoleWorker})
	if err != nil {
		t.Fatal(err)
	}
	if got := handshake(t, srv.addr, cfg); got != sw.worker.Fingerprint() {
		t.Fatalf("initial fingerprint %s, want %s", got, sw.worker.Fingerprint())
	}

	renewed := issue(t, sw.ca, "worker-1", pki.RoleWorker, "127.0.0.1")
	if err := pki.WriteBundle(sw.workerDir, renewed); err != nil {
		t.Fatal(err)
	}
	if got := handshake(t, srv.addr, cfg); got != renewed.Fingerprint() {
		t.Fatalf("after renewal: fingerprint %s, want the renewed %s", got, renewed.Fingerprint())
	}
	if rec.count("tls_certificate_reloaded") != 1 {
		t.Errorf("reload not logged once: %v", rec.msgs)
	}

	// A broken pair: the certificate of one identity with another's key.
	a := issue(t, sw.ca, "worker-1", pki.RoleWorker)
	b := issue(t, sw.ca, "worker-1", pki.RoleWorker)
	keyPEM, err := pki.EncodeKeyPEM(b.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sw.workerDir, pki.CertFile), pki.EncodeCertPEM(a.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sw.workerDir, pki.KeyFile), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if got := handshake(t, srv.addr, cfg); got != renewed.Fingerprint() {
			t.Fatalf("after a broken pair: fingerprint %s, want the old %s", got, renewed.Fingerprint())
		}
	}
	if n := rec.count("tls_certificate_reload_failed"); n != 1 {
		t.Errorf("broken pair logged %d times, want once", n)
	}

	// A pair from another CA, swapped in by rename, is refused the same way.
	foreign := issue(t, newCA(t, time.Time{}), "worker-1", pki.RoleWorker)
	foreignKey, _ := pki.EncodeKeyPEM(foreign.Key)
	replaceFile(t, filepath.Join(sw.workerDir, pki.KeyFile), foreignKey, 0o600)
	replaceFile(t, filepath.Join(sw.workerDir, pki.CertFile), pki.EncodeCertPEM(foreign.Cert), 0o644)
	if got := handshake(t, srv.addr, cfg); got != renewed.Fingerprint() {
		t.Fatalf("after a foreign pair: fingerprint %s, want the old %s", got, renewed.Fingerprint())
	}
	if n := rec.count("tls_certificate_reload_failed"); n != 2 {
		t.Errorf("foreign pair: %d reload failures logged, want 2", n)
	}

	// So is an expired pair from our own CA.
	past := &pki.CA{Cert: sw.ca.Cert, Key: sw.ca.Key, Now: func() time.Time { return time.Now().Add(-400 * 24 * time.Hour) }}
	if err := pki.WriteBundle(sw.workerDir, issue(t, past, "worker-1", pki.RoleWorker)); err != nil {
		t.Fatal(err)
	}
	if got := handshake(t, srv.addr, cfg); got != renewed.Fingerprint() {
		t.Fatalf("after an expired pair: fingerprint %s, want the old %s", got, renewed.Fingerprint())
	}
	if n := rec.count("tls_certificate_reload_failed"); n != 3 {
		t.Errorf("expired pair: %d reload failures logged, want 3", n)
	}

	// Fixing the pair is picked up again.
	if err := pki.WriteBundle(sw.workerDir, a); err != nil {
		t.Fatal(err)
	}
	if got := handshake(t, srv.addr, cfg); got != a.Fingerprint() {
		t.Fatalf("after repair: fingerprint %s, want %s", got, a.Fingerprint())
	}
}

func TestServerTLSConfigMissingBundle(t *testing.T) {
	dir := t.TempDir()
	_, err := pki.ServerTLSConfig(dir, pki.ServerOptions{})
	var fe *pki.FileError
	if !errors.Is(err, decnet.ErrNotFound) || !errors.As(err, &fe) || fe.Path != filepath.Join(dir, pki.CACertFile) {
		t.Fatalf("err = %v, want missing ca.crt", err)
	}
}

// replaceFile swaps path for a new file holding data, by rename.
func replaceFile(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestServerTLSConfigRefusesExpiredIdentity(t *testing.T) {
	ca := newCA(t, time.Now().Add(-2*365*24*time.Hour))
	dir := writeBundle(t, issue(t, ca, "worker-1", pki.RoleWorker))
	if _, err := pki.ServerTLSConfig(dir, pki.ServerOptions{}); !errors.Is(err, decnet.ErrInvalid) {
		t.Fatalf("expired identity: %v, want ErrInvalid", err)
	}
}

// BenchmarkHandshake measures one full mTLS handshake (new connection, no
// resumption) on loopback, including the reload check and VerifyConnection.
func BenchmarkHandshake(b *testing.B) {
	ca, err := pki.NewCA(nil)
	if err != nil {
		b.Fatal(err)
	}
	master, _ := ca.NewBundle(pki.IssueRequest{Name: pki.MasterName, Role: pki.RoleMaster})
	worker, _ := ca.NewBundle(pki.IssueRequest{Name: "worker-1", Role: pki.RoleWorker})
	dir := filepath.Join(b.TempDir(), "w")
	if err := pki.WriteBundle(dir, worker); err != nil {
		b.Fatal(err)
	}
	srvCfg, err := pki.ServerTLSConfig(dir, pki.ServerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srvCfg)
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if c.(*tls.Conn).Handshake() == nil {
				_, _ = c.Write([]byte{1})
			}
			_ = c.Close()
		}
	}()
	defer func() { _ = ln.Close(); <-done }()
	cliCfg, err := pki.ClientTLSConfig(master, pki.ExpectPeer{Role: pki.RoleWorker, Fingerprint: worker.Fingerprint()})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		c, err := tls.Dial("tcp", ln.Addr().String(), cliCfg)
		if err != nil {
			b.Fatal(err)
		}
		// The server writes once its side (client certificate check) is done.
		if _, err := c.Read(make([]byte, 1)); err != nil {
			b.Fatal(err)
		}
		_ = c.Close()
	}
}
