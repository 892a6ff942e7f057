package agent_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/agent"
	"github.com/decnet-swarm/sdk/decnet/agent/agenttest"
	"github.com/decnet-swarm/sdk/decnet/agentclient"
	"github.com/decnet-swarm/sdk/decnet/engine"
	"github.com/decnet-swarm/sdk/decnet/pki"
	"github.com/decnet-swarm/sdk/decnet/state"
	"github.com/decnet-swarm/sdk/internal/dockertest"
)

func TestMain(m *testing.M) { dockertest.Main(m) }

func shard(deckies ...decnet.Decky) decnet.Config {
	return decnet.Config{Mode: decnet.ModeSwarm, Deckies: deckies}
}

// raw is an HTTP client presenting the master identity, for requests the
// agentclient would never send.
type raw struct {
	t   *testing.T
	hc  *http.Client
	url string
}

func newRaw(t *testing.T, srv *agenttest.Server) *raw {
	t.Helper()
	cfg, err := pki.ClientTLSConfig(srv.PKI.Master, pki.ExpectPeer{Role: pki.RoleWorker, Fingerprint: srv.PKI.Worker.Fingerprint()})
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}}
	t.Cleanup(hc.CloseIdleConnections)
	return &raw{t: t, hc: hc, url: "https://" + srv.Addr}
}

// do sends a request and returns the status and the decoded wire error (if any).
func (r *raw) do(method, path string, body []byte) (int, decnet.WireError, http.Header) {
	r.t.Helper()
	req, err := http.NewRequestWithContext(r.t.Context(), method, r.url+path, bytes.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		r.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var wb decnet.WireBody
	if resp.StatusCode >= 400 {
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			r.t.Errorf("%s %s: error content type %q", method, path, ct)
		}
		if err := decnet.DecodeStrict(data, &wb); err != nil || wb.Error.Code == "" || wb.Error.Message == "" {
			r.t.Errorf("%s %s: error body %q is not the wire error envelope (%v)", method, path, data, err)
		}
	}
	return resp.StatusCode, wb.Error, resp.Header
}

func mustDeploy(t *testing.T, c *agentclient.Client, cfg decnet.Config) {
	t.Helper()
	if _, err := c.Deploy(t.Context(), cfg, agentclient.DeployOptions{}); err != nil {
		t.Fatalf("deploy: %v", err)
	}
}

func readState(t *testing.T, srv *agenttest.Server) []byte {
	t.Helper()
	data, err := os.ReadFile(srv.StatePath())
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestRejectedRequestsChangeNothing(t *testing.T) {
	srv := agenttest.Start(t, agenttest.Options{})
	mustDeploy(t, srv.Client(t), shard(decnet.Decky{Name: "web-1", Services: []string{"ssh", "http"}}))
	before := readState(t, srv)
	callsBefore := len(srv.Engine.(*agenttest.FakeEngine).Calls())
	r := newRaw(t, srv)

	big := append([]byte(`{"decky_id":"web-1","services":["ssh"],"x":"`), bytes.Repeat([]byte("a"), decnet.MaxRequestBytes)...)
	big = append(big, `"}`...)
	cases := []struct {
		name, method, path string
		body               []byte
		status             int
		code               string
	}{
		{"unknown path", "GET", "/docs", nil, 404, decnet.CodeNotFound},
		{"openapi", "GET", "/openapi.json", nil, 404, decnet.CodeNotFound},
		{"root", "GET", "/", nil, 404, decnet.CodeNotFound},
		{"wrong method on status", "POST", "/status", nil, 405, decnet.CodeMethodNotAllowed},
		{"wrong method on mutate", "GET", "/mutate", nil, 405, decnet.CodeMethodNotAllowed},
		{"wrong method on deploy", "DELETE", "/deploy", nil, 405, decnet.CodeMethodNotAllowed},
		{"too large", "POST", "/mutate", big, 413, decnet.CodeTooLarge},
		{"malformed", "POST", "/mutate", []byte(`{"decky_id":`), 400, decnet.CodeInvalid},
		{"unknown field", "POST", "/mutate", []byte(`{"decky_id":"web-1","services":["ssh"],"force":true}`), 400, decnet.CodeInvalid},
		{"trailing data", "POST", "/mutate", []byte(`{"decky_id":"web-1","services":["ssh"]}{}`), 400, decnet.CodeInvalid},
		{"empty services", "POST", "/mutate", []byte(`{"decky_id":"web-1","services":[]}`), 400, decnet.CodeInvalid},
		{"unknown service", "POST", "/mutate", []byte(`{"decky_id":"web-1","services":["telnet2"]}`), 400, decnet.CodeInvalid},
		{"duplicate service", "POST", "/mutate", []byte(`{"decky_id":"web-1","services":["ssh","ssh"]}`), 400, decnet.CodeInvalid},
		{"empty body", "POST", "/deploy", nil, 400, decnet.CodeInvalid},
		{"deploy unknown field", "POST", "/deploy", []byte(`{"config":{"mode":"swarm","deckies":[]},"replace":true}`), 400, decnet.CodeInvalid},
		{"deploy ip outside subnet", "POST", "/deploy", []byte(`{"config":{"mode":"swarm","deckies":[{"name":"x","ip":"10.9.9.9","services":["ssh"]}]}}`), 400, decnet.CodeInvalid},
		{"deploy gateway ip", "POST", "/deploy", []byte(`{"config":{"mode":"swarm","deckies":[{"name":"x","ip":"172.30.254.1","services":["ssh"]}]}}`), 400, decnet.CodeInvalid},
		{"deploy bad name", "POST", "/deploy", []byte(`{"config":{"mode":"swarm","deckies":[{"name":"X_1","services":["ssh"]}]}}`), 400, decnet.CodeInvalid},
		{"teardown bad name", "POST", "/teardown", []byte(`{"decky_id":"../etc"}`), 400, decnet.CodeInvalid},
		{"teardown unknown decky", "POST", "/teardown", []byte(`{"decky_id":"ghost"}`), 404, decnet.CodeNotFound},
		{"mutate unknown decky", "POST", "/mutate", []byte(`{"decky_id":"ghost","services":["ssh"]}`), 404, decnet.CodeNotFound},
		{"self-destruct with a body", "POST", "/self-destruct", []byte(`{"now":true}`), 400, decnet.CodeInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, we, hdr := r.do(tc.method, tc.path, tc.body)
			if status != tc.status || we.Code != tc.code {
				t.Fatalf("got %d %q (%s), want %d %q", status, we.Code, we.Message, tc.status, tc.code)
			}
			if status == 405 && hdr.Get("Allow") == "" {
				t.Errorf("405 without Allow header")
			}
		})
	}
	if after := readState(t, srv); !bytes.Equal(before, after) {
		t.Fatalf("a rejected request changed the state file")
	}
	if calls := srv.Engine.(*agenttest.FakeEngine).Calls(); len(calls) != callsBefore {
		t.Fatalf("a rejected request reached the engine: %v", calls[callsBefore:])
	}
}

// TestOversizedChunkedBodyIs413 sends a body without Content-Length, so
// the limit is enforced while reading.
func TestOversizedChunkedBodyIs413(t *testing.T) {
	srv := agenttest.Start(t, agenttest.Options{})
	r := newRaw(t, srv)
	body := io.MultiReader(strings.NewReader(`{"config":{"mode":"swarm","deckies":[{"name":"a","services":["ssh"],"hostname":"`),
		bytes.NewReader(bytes.Repeat([]byte("a"), 2*decnet.MaxRequestBytes)), strings.NewReader(`"}]}}`))
	req, err := http.NewRequestWithContext(t.Context(), "POST", r.url+"/deploy", body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", resp.StatusCode)
	}
	if _, err := os.Stat(srv.StatePath()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("rejected deploy wrote state: %v", err)
	}
}

func TestHandlerWithoutClientCertificateIs401(t *testing.T) {
	st, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{Engine: agenttest.NewFakeEngine(), State: st, Network: agenttest.DefaultNetwork()})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/health", nil))
	if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), `"code":"unauthorized"`) {
		t.Fatalf("got %d %s", rec.Code, rec.Body)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	st, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]agent.Config{
		"no engine":    {State: st, Network: agenttest.DefaultNetwork()},
		"no state":     {Engine: agenttest.NewFakeEngine(), Network: agenttest.DefaultNetwork()},
		"bad network":  {Engine: agenttest.NewFakeEngine(), State: st, Network: decnet.Network{Driver: "macvlan"}},
		"bad pin":      {Engine: agenttest.NewFakeEngine(), State: st, Network: agenttest.DefaultNetwork(), MasterFingerprint: "xyz"},
		"relative cmp": {Engine: agenttest.NewFakeEngine(), State: st, Network: agenttest.DefaultNetwork(), ComposeFile: "compose.yaml"},
	} {
		if _, err := agent.New(cfg); !errors.Is(err, decnet.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	if _, err := agent.New(agent.Config{Engine: agenttest.NewFakeEngine(), State: st, Network: agenttest.DefaultNetwork(), BundleDir: t.TempDir()}); !errors.Is(err, decnet.ErrNotFound) {
		t.Errorf("empty bundle dir: err = %v, want ErrNotFound", err)
	}
}

func TestDeployAllocatesAndKeepsAddresses(t *testing.T) {
	network := agenttest.DefaultNetwork()
	network.IPRange = netip.MustParsePrefix("172.30.254.8/30") // .8 .9 .10 .11
	srv := agenttest.Start(t, agenttest.Options{Network: network})
	c := srv.Client(t)
	mustDeploy(t, c, shard(
		decnet.Decky{Name: "a", Services: []string{"ssh"}},
		decnet.Decky{Name: "b", IP: netip.MustParseAddr("172.30.254.9"), Services: []string{"ssh"}},
		decnet.Decky{Name: "c", Services: []string{"ssh"}},
	))
	ips := statusIPs(t, c)
	want := map[string]string{"a": "172.30.254.8", "b": "172.30.254.9", "c": "172.30.254.10"}
	if !maps.Equal(ips, want) {
		t.Fatalf("ips = %v, want %v", ips, want)
	}
	st, err := srv.Store.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := st.Config.Decky("c"); d.IP.String() != "172.30.254.10" {
		t.Fatalf("allocated ip not persisted: %+v", d)
	}
	// Redeploy with "a" dropped and a new "d": c keeps its address, d takes
	// the freed .8.
	mustDeploy(t, c, shard(
		decnet.Decky{Name: "c", Services: []string{"ssh"}},
		decnet.Decky{Name: "d", Services: []string{"http"}},
	))
	ips = statusIPs(t, c)
	want = map[string]string{"c": "172.30.254.10", "d": "172.30.254.8"}
	if !maps.Equal(ips, want) {
		t.Fatalf("after redeploy ips = %v, want %v", ips, want)
	}
	// The pool holds 4 addresses: 5 deckies cannot fit, and nothing changes.
	before := readState(t, srv)
	five := shard()
	for _, n := range []string{"p", "q", "r", "s", "u"} {
		five.Deckies = append(five.Deckies, decnet.Decky{Name: n, Services: []string{"ssh"}})
	}
	_, err = c.Deploy(t.Context(), five, agentclient.DeployOptions{})
	if !errors.Is(err, decnet.ErrInvalid) {
		t.Fatalf("pool exhausted: err = %v, want ErrInvalid", err)
	}
	if !bytes.Equal(before, readState(t, srv)) {
		t.Fatal("a rejected deploy changed the state")
	}
}

func statusIPs(t *testing.T, c *agentclient.Client) map[string]string {
	t.Helper()
	st, err := c.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range st.Deckies {
		out[d.Name] = d.IP
	}
	return out
}

// blocker is a FakeEngine hook that parks the first call of op until released.
type blocker struct {
	op      string
	entered chan struct{}
	release chan struct{}
	once    sync.Once
	ctxErr  chan error
}

func newBlocker(op string) *blocker {
	return &blocker{op: op, entered: make(chan struct{}), release: make(chan struct{}), ctxErr: make(chan error, 1)}
}

func (b *blocker) hook(ctx context.Context, op, decky string) error {
	if op != b.op {
		return nil
	}
	first := false
	b.once.Do(func() { first = true })
	if !first {
		return nil
	}
	close(b.entered)
	<-b.release
	b.ctxErr <- ctx.Err()
	return ctx.Err()
}

// startBlockedDeploy starts an agent whose engine blocks inside Apply and a
// deploy of decky "slow" that is now holding the state lock; close
// b.release to let it finish, then read its result from deployDone.
func startBlockedDeploy(tb testing.TB) (fake *agenttest.FakeEngine, b *blocker, c *agentclient.Client, deployDone <-chan error) {
	tb.Helper()
	fake = agenttest.NewFakeEngine()
	b = newBlocker("apply")
	fake.Hook = b.hook
	srv := agenttest.Start(tb, agenttest.Options{Engine: fake})
	c = srv.Client(tb)
	done := make(chan error, 1)
	go func() {
		_, err := c.Deploy(context.Background(), shard(decnet.Decky{Name: "slow", Services: []string{"ssh"}}), agentclient.DeployOptions{})
		done <- err
	}()
	<-b.entered // the deploy holds the state lock inside the engine now
	return fake, b, c, done
}

func TestHealthAndStatusAnswerDuringLongDeploy(t *testing.T) {
	fake, b, c, deployDone := startBlockedDeploy(t)

	// The deploy holds the lock until b.release is closed below, so a
	// /health or /status that waited for it would run into this deadline.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for i := 0; i < 5; i++ {
		if _, err := c.Health(ctx); err != nil {
			t.Fatalf("health during deploy: %v", err)
		}
		st, err := c.Status(ctx)
		if err != nil {
			t.Fatalf("status during deploy: %v", err)
		}
		// Status serves the desired state the deploy already saved.
		if !st.Deployed || len(st.Deckies) != 1 || st.Deckies[0].Running {
			t.Fatalf("status during deploy = %+v", st)
		}
	}

	// A mutate waits for the deploy: state-changing requests are serialised.
	mutateDone := make(chan error, 1)
	go func() {
		_, err := c.Mutate(context.Background(), "slow", []string{"http"}, agentclient.MutateOptions{})
		mutateDone <- err
	}()
	select {
	case err := <-mutateDone:
		t.Fatalf("mutate finished while the deploy held the lock: %v", err)
	case <-time.After(50 * time.Millisecond):
		// Not a synchronisation: a bounded check that the mutate is still waiting.
	}
	if calls := fake.Calls(); slices.Contains(calls, "apply_decky:slow") {
		t.Fatalf("mutate reached the engine during the deploy: %v", calls)
	}
	close(b.release)
	if err := <-deployDone; err != nil {
		t.Fatalf("deploy: %v", err)
	}
	if err := <-mutateDone; err != nil {
		t.Fatalf("mutate: %v", err)
	}
	calls := fake.Calls()
	if i, j := slices.Index(calls, "apply:"), slices.Index(calls, "apply_decky:slow"); i < 0 || j < i {
		t.Fatalf("calls = %v, want apply before apply_decky", calls)
	}
}

func TestDeployOutlivesDisconnectedClient(t *testing.T) {
	fake := agenttest.NewFakeEngine()
	b := newBlocker("apply")
	fake.Hook = b.hook
	srv := agenttest.Start(t, agenttest.Options{Engine: fake})
	c := srv.Client(t, agentclient.WithRetry(agentclient.RetryPolicy{}))

	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Deploy(ctx, shard(decnet.Decky{Name: "d1", Services: []string{"ssh", "http"}}), agentclient.DeployOptions{})
		errc <- err
	}()
	<-b.entered
	cancel() // the master goes away mid-reconcile
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("client err = %v, want context.Canceled", err)
	}
	close(b.release)
	if err := <-b.ctxErr; err != nil {
		t.Fatalf("the engine's context was cancelled with the client: %v", err)
	}
	// The reconcile finishes: poll status until the decky runs.
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := c.Status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Deckies) == 1 && st.Deckies[0].Running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deploy never completed after the client left: %+v", st)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, bounded by the deadline
	}
}

func TestMutateEngineFailureKeepsDesiredStateAndConverges(t *testing.T) {
	fake := agenttest.NewFakeEngine()
	srv := agenttest.Start(t, agenttest.Options{Engine: fake})
	c := srv.Client(t)
	mustDeploy(t, c, shard(decnet.Decky{Name: "m1", Services: []string{"ssh", "http"}}))
	var fail sync.Mutex
	failing := true
	fake.Hook = func(ctx context.Context, op, decky string) error {
		fail.Lock()
		defer fail.Unlock()
		if failing && op == "apply_decky" {
			return agenttest.ErrInjected
		}
		return nil
	}
	_, err := c.Mutate(t.Context(), "m1", []string{"ssh", "smtp"}, agentclient.MutateOptions{})
	if !errors.Is(err, decnet.ErrApplyFailed) {
		t.Fatalf("err = %v, want ErrApplyFailed", err)
	}
	var we *decnet.WireError
	if !errors.As(err, &we) || we.Status != 500 || we.Code != decnet.CodeApplyFailed {
		t.Fatalf("err = %#v, want 500 apply_failed", err)
	}
	st, err := c.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	d := st.Deckies[0]
	if !slices.Equal(d.Services, []string{"ssh", "smtp"}) || d.Running || d.Containers["smtp"] != decnet.ContainerAbsent {
		t.Fatalf("after failed mutate status = %+v", d)
	}
	fail.Lock()
	failing = false
	fail.Unlock()
	if _, err := c.Mutate(t.Context(), "m1", []string{"ssh", "smtp"}, agentclient.MutateOptions{}); err != nil {
		t.Fatalf("repeat mutate: %v", err)
	}
	st, err = c.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !st.Deckies[0].Running {
		t.Fatalf("repeat did not converge: %+v", st.Deckies[0])
	}
}

func TestTeardownEngineFailureKeepsDecky(t *testing.T) {
	fake := agenttest.NewFakeEngine()
	srv := agenttest.Start(t, agenttest.Options{Engine: fake})
	c := srv.Client(t, agentclient.WithRetry(agentclient.RetryPolicy{}))
	mustDeploy(t, c, shard(decnet.Decky{Name: "t1", Services: []string{"ssh"}}))
	before := readState(t, srv)
	fake.Hook = func(ctx context.Context, op, decky string) error {
		if op == "teardown" {
			return decnet.Errorf(decnet.ErrUnavailable, "daemon", "", "docker is down")
		}
		return nil
	}
	if err := c.Teardown(t.Context(), "t1"); !errors.Is(err, decnet.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if !bytes.Equal(before, readState(t, srv)) {
		t.Fatal("failed teardown dropped the decky from the state")
	}
}

type reaperFunc func(ctx context.Context) error

func (f reaperFunc) SelfDestruct(ctx context.Context) error { return f(ctx) }

func TestSelfDestruct(t *testing.T) {
	called := make(chan struct{}, 1)
	srv := agenttest.Start(t, agenttest.Options{Reaper: reaperFunc(func(context.Context) error { called <- struct{}{}; return nil })})
	r := newRaw(t, srv)
	if status, _, _ := r.do("POST", "/self-destruct", nil); status != http.StatusAccepted {
		t.Fatalf("status %d, want 202", status)
	}
	<-called

	failing := agenttest.Start(t, agenttest.Options{Reaper: reaperFunc(func(context.Context) error { return errors.New("systemd refused the unit") })})
	if err := failing.Client(t).SelfDestruct(t.Context()); err == nil {
		t.Fatal("self-destruct succeeded although the reaper failed")
	} else if we := (*decnet.WireError)(nil); !errors.As(err, &we) || we.Status != 500 {
		t.Fatalf("err = %v, want 500", err)
	}
	none := agenttest.Start(t, agenttest.Options{})
	if status, _, _ := newRaw(t, none).do("POST", "/self-destruct", []byte(`{}`)); status != 500 {
		t.Fatalf("without a reaper: %d, want 500", status)
	}
}

func TestRequestLogHasNoSecrets(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := agenttest.Start(t, agenttest.Options{Logger: log})
	c := srv.Client(t)
	mustDeploy(t, c, shard(decnet.Decky{Name: "l1", Services: []string{"ssh"},
		ServiceConfig: map[string]map[string]string{"ssh": {"PASSWORD": "hunter2-topsecret"}}}))
	if _, err := c.Status(t.Context()); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.Contains(out, "hunter2-topsecret") || strings.Contains(out, "PRIVATE KEY") {
		t.Fatalf("log leaks a secret:\n%s", out)
	}
	var seen int
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] != "agent_request" {
			continue
		}
		seen++
		for _, k := range []string{"method", "path", "status", "duration_ms", "peer_cn"} {
			if _, ok := rec[k]; !ok {
				t.Errorf("request log lacks %s: %s", k, line)
			}
		}
		if rec["peer_cn"] != pki.MasterName {
			t.Errorf("peer_cn = %v", rec["peer_cn"])
		}
	}
	if seen != 2 {
		t.Fatalf("%d request log lines, want 2:\n%s", seen, out)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestServeDrainsInFlightRequestOnShutdown(t *testing.T) {
	fake := agenttest.NewFakeEngine()
	b := newBlocker("apply_decky")
	fake.Hook = b.hook
	p := agenttest.NewPKI(t, false)
	srv := serveAgent(t, agent.Config{BundleDir: p.WorkerDir, Engine: fake})
	c, err := agentclient.New(srv.addr, agentclient.Credentials{Bundle: p.Master}, agentclient.WithFingerprint(p.Worker.Fingerprint()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mustDeploy(t, c, shard(decnet.Decky{Name: "x", Services: []string{"ssh"}}))
	mutated := make(chan error, 1)
	go func() {
		_, err := c.Mutate(context.Background(), "x", []string{"http"}, agentclient.MutateOptions{})
		mutated <- err
	}()
	<-b.entered
	srv.stop()
	select {
	case err := <-srv.served:
		t.Fatalf("Serve returned before the in-flight mutate finished: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(b.release)
	if err := <-mutated; err != nil {
		t.Fatalf("in-flight mutate: %v", err)
	}
	if err := <-srv.served; err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// serving is an agent run by Serve on loopback, stopped by the test.
type serving struct {
	addr   string
	state  *state.Store
	stop   context.CancelFunc // SIGTERM in the binary
	served chan error         // Serve's result
}

// serveAgent runs agent.New(cfg) on 127.0.0.1; a nil cfg.State is a fresh
// state directory and a zero cfg.Network the test LAN.
func serveAgent(t *testing.T, cfg agent.Config) *serving {
	t.Helper()
	if cfg.State == nil {
		st, err := state.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		cfg.State = st
	}
	if cfg.Network.Driver == "" {
		cfg.Network = agenttest.DefaultNetwork()
	}
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	s := &serving{addr: ln.Addr().String(), state: cfg.State.(*state.Store), stop: stop, served: make(chan error, 1)}
	go func() { s.served <- a.Serve(ctx, ln) }()
	return s
}

func TestDeployPartialFailureReportsPerDecky(t *testing.T) {
	fake := agenttest.NewFakeEngine()
	fake.Hook = func(ctx context.Context, op, decky string) error {
		if op == "apply" {
			return &engine.ApplyError{Deckies: map[string]error{"b": agenttest.ErrInjected}}
		}
		return nil
	}
	srv := agenttest.Start(t, agenttest.Options{Engine: fake})
	c := srv.Client(t)
	_, err := c.Deploy(t.Context(), shard(decnet.Decky{Name: "a", Services: []string{"ssh"}}, decnet.Decky{Name: "b", Services: []string{"ssh"}}), agentclient.DeployOptions{})
	var we *decnet.WireError
	if !errors.Is(err, decnet.ErrApplyFailed) || !errors.As(err, &we) || we.Status != 500 {
		t.Fatalf("err = %v, want 500 apply_failed", err)
	}
	per, _ := we.Details["deckies"].(map[string]any)
	if _, ok := per["b"]; !ok || len(per) != 1 {
		t.Fatalf("details = %v, want the failure of b", we.Details)
	}
	// The desired state was recorded: both deckies, repeat converges.
	st, err := srv.Store.Load(t.Context())
	if err != nil || len(st.Config.Deckies) != 2 {
		t.Fatalf("state after partial failure: %+v %v", st, err)
	}
}

func readFile(path string) ([]byte, error) { return os.ReadFile(path) }

// TestStatusWhenDockerIsDown reports the desired deckies with every
// container "unknown", never as gone.
func TestStatusWhenDockerIsDown(t *testing.T) {
	fake := agenttest.NewFakeEngine()
	srv := agenttest.Start(t, agenttest.Options{Engine: fake})
	c := srv.Client(t)
	mustDeploy(t, c, shard(decnet.Decky{Name: "u1", Services: []string{"ssh"}}))
	fake.SetStatusError(decnet.Errorf(decnet.ErrUnavailable, "daemon", "", "docker is down"))
	st, err := c.Status(t.Context())
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	want := map[string]string{decnet.BaseContainerKey: "unknown", "ssh": "unknown"}
	if len(st.Deckies) != 1 || st.Deckies[0].Running || !maps.Equal(st.Deckies[0].Containers, want) {
		t.Fatalf("status = %+v", st)
	}
}

// TestServeAbortsOperationsPastTheDrainTimeout: when the drain deadline
// passes, Serve cancels the operations still running and returns only once
// their handlers have finished, so nothing keeps touching the engine or the
// state after Serve has returned.
func TestServeAbortsOperationsPastTheDrainTimeout(t *testing.T) {
	fake := agenttest.NewFakeEngine()
	entered := make(chan struct{})
	var once sync.Once
	fake.Hook = func(ctx context.Context, op, decky string) error {
		if op != "apply" {
			return nil
		}
		once.Do(func() { close(entered) })
		<-ctx.Done() // a reconcile that only ends when it is cancelled
		return ctx.Err()
	}
	p := agenttest.NewPKI(t, false)
	srv := serveAgent(t, agent.Config{BundleDir: p.WorkerDir, Engine: fake, ShutdownTimeout: 50 * time.Millisecond})
	defer srv.stop()
	c, err := agentclient.New(srv.addr, agentclient.Credentials{Bundle: p.Master},
		agentclient.WithFingerprint(p.Worker.Fingerprint()), agentclient.WithRetry(agentclient.RetryPolicy{}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deployed := make(chan error, 1)
	go func() {
		_, err := c.Deploy(context.Background(), shard(decnet.Decky{Name: "x", Services: []string{"ssh"}}), agentclient.DeployOptions{})
		deployed <- err
	}()
	<-entered
	srv.stop()
	select {
	case err := <-srv.served:
		if err == nil {
			t.Fatal("Serve returned nil although the drain timed out")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after the drain timeout")
	}
	// The handler has finished by the time Serve returned: the engine call
	// was cancelled, and its lock released.
	lctx, lcancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer lcancel()
	unlock, err := srv.state.Lock(lctx)
	if err != nil {
		t.Fatalf("state lock after Serve returned (a handler still holds it): %v", err)
	}
	unlock()
	if err := <-deployed; err == nil {
		t.Fatal("the aborted deploy reported success")
	}
}

// TestServeRefusesTLS12EvenWhenConfigAllowsIt: a caller-supplied
// Config.TLS that would allow TLS 1.2 is raised to TLS 1.3.
func TestServeRefusesTLS12EvenWhenConfigAllowsIt(t *testing.T) {
	p := agenttest.NewPKI(t, false)
	tlsCfg, err := pki.ServerTLSConfig(p.WorkerDir, pki.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg.MinVersion = tls.VersionTLS12
	srv := serveAgent(t, agent.Config{TLS: tlsCfg, Engine: agenttest.NewFakeEngine()})
	defer func() {
		srv.stop()
		if err := <-srv.served; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	dial := func(max uint16) error {
		conn, err := tls.Dial("tcp", srv.addr, &tls.Config{
			MinVersion: tls.VersionTLS12, MaxVersion: max,
			RootCAs: p.Master.CAPool(), ServerName: "127.0.0.1",
			Certificates: []tls.Certificate{p.Master.TLSCertificate()},
		})
		if err == nil {
			err = conn.Close()
		}
		return err
	}
	if err := dial(tls.VersionTLS12); err == nil {
		t.Fatal("a TLS 1.2 handshake succeeded")
	}
	if err := dial(tls.VersionTLS13); err != nil {
		t.Fatalf("TLS 1.3 handshake: %v", err)
	}
}
