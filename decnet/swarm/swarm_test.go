package swarm

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/agent/agenttest"
	"github.com/decnet-swarm/sdk/decnet/agentclient"
	"github.com/decnet-swarm/sdk/decnet/pki"
	"github.com/decnet-swarm/sdk/decnet/repository"
	"github.com/decnet-swarm/sdk/decnet/repository/sqlite"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func openRepo(t *testing.T) repository.Repository {
	t.Helper()
	r, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "master.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// fleet is a repository with one worker host (two deckies on it), another
// host with one decky, and a master-resident decky.
type fleet struct {
	repo         repository.Repository
	host, other  repository.Host
	workerBundle *pki.Bundle
	otherBundle  *pki.Bundle
	masterBundle *pki.Bundle
	masterDir    string
	ca           *pki.CA
}

func newFleet(t *testing.T, p *agenttest.PKI, addr string) *fleet {
	t.Helper()
	ctx := t.Context()
	f := &fleet{repo: openRepo(t), ca: p.CA, workerBundle: p.Worker, masterBundle: p.Master}
	f.otherBundle = p.Issue(t, "worker-2", pki.RoleWorker)
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(portStr)
	f.host, err = f.repo.AddHost(ctx, repository.Host{Name: p.Worker.Name(), Address: host, AgentPort: port,
		Status: repository.HostEnrolled, Fingerprint: p.Worker.Fingerprint()})
	if err != nil {
		t.Fatal(err)
	}
	f.other, err = f.repo.AddHost(ctx, repository.Host{Name: "worker-2", Address: "127.0.0.1", AgentPort: 1,
		Status: repository.HostEnrolled, Fingerprint: f.otherBundle.Fingerprint()})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []struct{ name, host string }{
		{"web-1", f.host.UUID}, {"web-2", f.host.UUID}, {"db-1", f.other.UUID}, {"local-1", ""},
	} {
		spec := decnet.Decky{Name: d.name, Services: []string{"ssh"}, HostUUID: d.host}
		if _, err := f.repo.CreateDecky(ctx, repository.Decky{Name: d.name, HostUUID: d.host, Spec: spec,
			Services: []string{"ssh"}, State: repository.DeckyPending}); err != nil {
			t.Fatal(err)
		}
	}
	f.masterDir = filepath.Join(t.TempDir(), "master")
	if err := pki.WriteBundle(f.masterDir, p.Master); err != nil {
		t.Fatal(err)
	}
	return f
}

// serveHeartbeat runs HeartbeatHandler on a real mTLS listener with the
// master identity until the test ends.
func (f *fleet) serveHeartbeat(t *testing.T) string {
	t.Helper()
	cfg, err := pki.ServerTLSConfig(f.masterDir, pki.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: HeartbeatHandler(f.repo, HeartbeatOptions{}), TLSConfig: cfg, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() {
		// Shutdown waits for every connection, including one the server is
		// closing after an oversized body.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
		}
		<-done
	})
	return "https://" + ln.Addr().String() + "/heartbeat"
}

// heartbeat posts a status as the identity b and returns the HTTP status.
func heartbeat(t *testing.T, url string, b *pki.Bundle, st decnet.StatusResponse) int {
	t.Helper()
	cfg, err := pki.ClientTLSConfig(b, pki.ExpectPeer{Role: pki.RoleMaster})
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: cfg}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	body, _ := json.Marshal(st)
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	defer resp.Body.Close()
	return resp.StatusCode
}

var status = decnet.StatusResponse{Deployed: true, Deckies: []decnet.DeckyStatus{
	{Name: "web-1", Running: true}, {Name: "web-2", Running: false},
}}

// deadAddr returns a loopback address nobody listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func TestDecommissionAgentDown(t *testing.T) {
	ctx := t.Context()
	p := agenttest.NewPKI(t, true)
	f := newFleet(t, p, deadAddr(t))
	url := f.serveHeartbeat(t)

	// Before: the worker's heartbeat is accepted and recorded.
	if code := heartbeat(t, url, f.workerBundle, status); code != http.StatusOK {
		t.Fatalf("heartbeat before decommission: %d", code)
	}
	h, err := f.repo.GetHost(ctx, f.host.UUID)
	if err != nil || h.Status != repository.HostActive {
		t.Fatalf("host after heartbeat: %+v, %v", h, err)
	}
	if d, _ := f.repo.GetDecky(ctx, "web-1"); d.State != repository.DeckyRunning {
		t.Fatalf("web-1 state %s after heartbeat", d.State)
	}

	start := time.Now()
	res, err := Decommission(ctx, f.repo, f.host.UUID,
		AgentDialer(agentclient.Credentials{Bundle: f.masterBundle}),
		DecommissionOptions{Actor: "operator:test", SelfDestructTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("decommission of a dead worker took %s", took)
	}
	if res.Acknowledged || res.SelfDestructErr == nil || res.Host.UUID != f.host.UUID {
		t.Fatalf("result %+v", res)
	}
	f.checkGone(t)

	ev := f.lastEvent(t)
	if ev.Outcome != OutcomeUnacknowledged || ev.Detail["self_destruct"] != OutcomeUnacknowledged || ev.Error == "" ||
		ev.HostUUID != f.host.UUID || ev.HostName != f.host.Name || ev.Actor != "operator:test" {
		t.Errorf("event %+v", ev)
	}

	// After: the old certificate's heartbeat is refused, and nothing is
	// recorded; another worker's is still accepted.
	if code := heartbeat(t, url, f.workerBundle, status); code != http.StatusForbidden {
		t.Fatalf("heartbeat with the decommissioned certificate: %d, want 403", code)
	}
	if _, err := f.repo.GetHost(ctx, f.host.UUID); !errors.Is(err, decnet.ErrNotFound) {
		t.Fatalf("the refused heartbeat resurrected the host: %v", err)
	}
	if code := heartbeat(t, url, f.otherBundle, decnet.StatusResponse{}); code != http.StatusOK {
		t.Fatalf("other worker's heartbeat: %d", code)
	}
}

// An agent that accepts connections and never answers does not block
// Decommission beyond its timeout.
func TestDecommissionAgentHangs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // held open, never answered
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-accepted
		for _, c := range conns {
			_ = c.Close()
		}
	})
	p := agenttest.NewPKI(t, true)
	f := newFleet(t, p, ln.Addr().String())
	start := time.Now()
	res, err := Decommission(t.Context(), f.repo, f.host.Name, // by name
		AgentDialer(agentclient.Credentials{Bundle: f.masterBundle}),
		DecommissionOptions{SelfDestructTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("decommission of a hanging worker took %s with a 300ms timeout", took)
	}
	if res.Acknowledged || !errors.Is(res.SelfDestructErr, context.DeadlineExceeded) && !errors.Is(res.SelfDestructErr, decnet.ErrUnavailable) {
		t.Errorf("self-destruct error %v", res.SelfDestructErr)
	}
	f.checkGone(t)
}

type recordingReaper struct{ calls atomic.Int32 }

func (r *recordingReaper) SelfDestruct(context.Context) error {
	r.calls.Add(1)
	return nil
}

func TestDecommissionAgentUp(t *testing.T) {
	rr := &recordingReaper{}
	srv := agenttest.Start(t, agenttest.Options{Reaper: rr, PinMaster: true})
	f := newFleet(t, srv.PKI, srv.Addr)
	res, err := Decommission(t.Context(), f.repo, f.host.UUID,
		AgentDialer(agentclient.Credentials{Bundle: f.masterBundle}), DecommissionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Acknowledged || res.SelfDestructErr != nil || rr.calls.Load() != 1 {
		t.Fatalf("result %+v, reaper calls %d", res, rr.calls.Load())
	}
	f.checkGone(t)
	if ev := f.lastEvent(t); ev.Outcome != OutcomeAcknowledged || ev.Error != "" {
		t.Errorf("event %+v", ev)
	}
}

func TestDecommissionUnknownHostChangesNothing(t *testing.T) {
	p := agenttest.NewPKI(t, true)
	f := newFleet(t, p, deadAddr(t))
	dialed := false
	dial := func(repository.Host) (SelfDestructer, error) { dialed = true; return nil, errors.New("unused") }
	for _, h := range []string{"no-such-host", ""} {
		_, err := Decommission(t.Context(), f.repo, h, dial, DecommissionOptions{})
		if !errors.Is(err, decnet.ErrNotFound) && !errors.Is(err, decnet.ErrInvalid) {
			t.Fatalf("Decommission(%q): %v", h, err)
		}
	}
	if dialed {
		t.Error("an unknown host was dialled")
	}
	hosts, _ := f.repo.ListHosts(t.Context(), repository.HostFilter{})
	deckies, _ := f.repo.ListDeckies(t.Context(), repository.DeckyFilter{})
	if len(hosts) != 2 || len(deckies) != 4 {
		t.Fatalf("hosts %d deckies %d after refused decommissions", len(hosts), len(deckies))
	}
}

func (f *fleet) checkGone(t *testing.T) {
	t.Helper()
	ctx := t.Context()
	if _, err := f.repo.GetHost(ctx, f.host.UUID); !errors.Is(err, decnet.ErrNotFound) {
		t.Errorf("host still there: %v", err)
	}
	for _, n := range []string{"web-1", "web-2"} {
		if _, err := f.repo.GetDecky(ctx, n); !errors.Is(err, decnet.ErrNotFound) {
			t.Errorf("decky %s still there: %v", n, err)
		}
	}
	for _, n := range []string{"db-1", "local-1"} {
		if _, err := f.repo.GetDecky(ctx, n); err != nil {
			t.Errorf("unrelated decky %s: %v", n, err)
		}
	}
	if _, err := f.repo.GetHost(ctx, f.other.UUID); err != nil {
		t.Errorf("unrelated host: %v", err)
	}
	if denied, err := f.repo.IsDenied(ctx, f.workerBundle.Fingerprint()); err != nil || !denied {
		t.Errorf("fingerprint not denied: %v %v", denied, err)
	}
	if _, err := AuthorizeWorker(ctx, f.repo, f.workerBundle.Cert); !errors.Is(err, decnet.ErrUnauthorized) {
		t.Errorf("AuthorizeWorker after decommission: %v", err)
	}
}

func (f *fleet) lastEvent(t *testing.T) repository.Event {
	t.Helper()
	evs, _, err := f.repo.ListEvents(t.Context(), repository.EventFilter{Kind: EventHostDecommissioned})
	if err != nil || len(evs) != 1 {
		t.Fatalf("decommission events %v (%v), want one", evs, err)
	}
	return evs[0]
}

func TestAuthorizeWorker(t *testing.T) {
	ctx := t.Context()
	p := agenttest.NewPKI(t, true)
	f := newFleet(t, p, deadAddr(t))
	h, err := AuthorizeWorker(ctx, f.repo, f.workerBundle.Cert)
	if err != nil || h.UUID != f.host.UUID {
		t.Fatalf("AuthorizeWorker(worker): %+v, %v", h, err)
	}
	stranger := p.Issue(t, "worker-3", pki.RoleWorker)  // CA-signed, not enrolled
	impostor := p.Issue(t, f.host.Name, pki.RoleWorker) // same name, other key
	operator := p.Issue(t, "alice", pki.RoleOperator)   // wrong role
	for name, b := range map[string]*pki.Bundle{"stranger": stranger, "impostor": impostor, "operator": operator, "master": f.masterBundle} {
		if _, err := AuthorizeWorker(ctx, f.repo, b.Cert); !errors.Is(err, decnet.ErrUnauthorized) {
			t.Errorf("%s: %v, want ErrUnauthorized", name, err)
		}
	}
	if _, err := AuthorizeWorker(ctx, f.repo, nil); !errors.Is(err, decnet.ErrUnauthorized) {
		t.Errorf("nil certificate: %v", err)
	}
	// Refused peers get 403 from the heartbeat endpoint, and change nothing.
	url := f.serveHeartbeat(t)
	for _, b := range []*pki.Bundle{stranger, impostor, operator} {
		if code := heartbeat(t, url, b, status); code != http.StatusForbidden {
			t.Errorf("heartbeat as %s: %d, want 403", b.Name(), code)
		}
	}
	if h, _ := f.repo.GetHost(ctx, f.host.UUID); h.Status != repository.HostEnrolled {
		t.Errorf("a refused heartbeat changed the host: %s", h.Status)
	}
}

func TestHeartbeatRejectsBadBodies(t *testing.T) {
	p := agenttest.NewPKI(t, true)
	f := newFleet(t, p, deadAddr(t))
	url := f.serveHeartbeat(t)
	cfg, err := pki.ClientTLSConfig(f.workerBundle, pki.ExpectPeer{Role: pki.RoleMaster})
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: cfg}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	for name, body := range map[string]string{
		"unknown field": `{"deployed":true,"bogus":1}`,
		"malformed":     `{"deployed":`,
		"too large":     `{"deckies":[` + string(bytes.Repeat([]byte(`{"name":"x"},`), decnet.MaxRequestBytes/12)) + `{}]}`,
	} {
		resp, err := c.Post(url, "application/json", bytes.NewReader([]byte(body)))
		if err != nil {
			t.Fatal(err)
		}
		var wb decnet.WireBody
		_ = json.NewDecoder(resp.Body).Decode(&wb)
		resp.Body.Close()
		if resp.StatusCode/100 != 4 || !errors.Is(&wb.Error, decnet.ErrInvalid) {
			t.Errorf("%s: %d %+v, want a 4xx invalid", name, resp.StatusCode, wb.Error)
		}
	}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", resp.StatusCode)
	}
	if h, _ := f.repo.GetHost(t.Context(), f.host.UUID); h.Status != repository.HostEnrolled {
		t.Errorf("a rejected heartbeat changed the host: %s", h.Status)
	}
}

// failingBody is a request body whose read fails midway, as when a worker's
// connection breaks (a real client cannot be made to do this on demand).
type failingBody struct{}

func (failingBody) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }
func (failingBody) Close() error             { return nil }

// A body that cannot be read is a bad request, not a body too large, and
// changes nothing.
func TestHeartbeatBodyReadError(t *testing.T) {
	p := agenttest.NewPKI(t, true)
	f := newFleet(t, p, deadAddr(t))
	r := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/heartbeat", failingBody{})
	r.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{f.workerBundle.Cert}}}
	w := httptest.NewRecorder()
	HeartbeatHandler(f.repo, HeartbeatOptions{}).ServeHTTP(w, r)
	var wb decnet.WireBody
	if err := json.Unmarshal(w.Body.Bytes(), &wb); err != nil {
		t.Fatal(err)
	}
	if w.Code != http.StatusBadRequest || !errors.Is(&wb.Error, decnet.ErrInvalid) {
		t.Errorf("unreadable body: %d %+v, want 400 invalid", w.Code, wb.Error)
	}
	if h, _ := f.repo.GetHost(t.Context(), f.host.UUID); h.Status != repository.HostEnrolled {
		t.Errorf("a failed heartbeat changed the host: %s", h.Status)
	}
}
