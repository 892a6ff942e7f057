package agentclient_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/agent/agenttest"
	"github.com/decnet-swarm/sdk/decnet/agentclient"
	"github.com/decnet-swarm/sdk/decnet/pki"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func shard(deckies ...decnet.Decky) decnet.Config {
	return decnet.Config{Mode: decnet.ModeSwarm, Deckies: deckies}
}

func deploy(t *testing.T, c *agentclient.Client, cfg decnet.Config) {
	t.Helper()
	res, err := c.Deploy(t.Context(), cfg, agentclient.DeployOptions{})
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	if res.DryRun || len(res.Deckies) != len(cfg.Deckies) {
		t.Fatalf("deploy result = %+v", res)
	}
}

func TestMasterCanCallHealthStatusMutate(t *testing.T) {
	srv := agenttest.Start(t, agenttest.Options{PinMaster: true})
	c := srv.Client(t)
	ctx := t.Context()

	h, err := c.Health(ctx)
	if err != nil {
		t.Fatalf("health: %v", err)
	}
	if h.Status != "ok" || h.Version != decnet.Version || h.Protocol != decnet.ProtocolVersion {
		t.Fatalf("health = %+v", h)
	}

	st, err := c.Status(ctx)
	if err != nil {
		t.Fatalf("status before deploy: %v", err)
	}
	if st.Deployed || len(st.Deckies) != 0 {
		t.Fatalf("status before deploy = %+v", st)
	}

	deploy(t, c, shard(decnet.Decky{
		Name: "web-1", Services: []string{"ssh", "http", "ftp"},
		ServiceConfig: map[string]map[string]string{"ssh": {"PASSWORD": "hunter2-secret"}},
	}))
	st, err = c.Status(ctx)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	if !st.Deployed || len(st.Deckies) != 1 {
		t.Fatalf("status = %+v", st)
	}
	d := st.Deckies[0]
	if d.IP != "172.30.254.2" {
		t.Errorf("allocated ip = %q, want the first free address 172.30.254.2", d.IP)
	}
	if !d.Running || d.Containers["ssh"] != decnet.ContainerRunning || d.Containers[decnet.BaseContainerKey] != decnet.ContainerRunning {
		t.Errorf("runtime = running %v %v", d.Running, d.Containers)
	}

	res, err := c.Mutate(ctx, "web-1", []string{"ssh", "smtp"}, agentclient.MutateOptions{})
	if err != nil {
		t.Fatalf("mutate: %v", err)
	}
	if res.DryRun || res.DeckyID != "web-1" || !slices.Equal(res.Services, []string{"ssh", "smtp"}) {
		t.Fatalf("mutate result = %+v", res)
	}
	st, err = c.Status(ctx)
	if err != nil {
		t.Fatalf("status after mutate: %v", err)
	}
	d = st.Deckies[0]
	if !slices.Equal(d.Services, []string{"ssh", "smtp"}) || d.LastMutated.IsZero() || !d.Running {
		t.Errorf("after mutate: %+v", d)
	}
	if d.IP != "172.30.254.2" {
		t.Errorf("mutate moved the decky to %s", d.IP)
	}
	if _, ok := d.Containers["http"]; ok {
		t.Errorf("status still reports removed service http: %v", d.Containers)
	}
	// Connection reuse: every call above went over one connection.
	if n := srv.Conns(); n != 1 {
		t.Errorf("agent accepted %d connections for 5 sequential calls, want 1", n)
	}
}

func TestStatusNeverEchoesServiceConfig(t *testing.T) {
	srv := agenttest.Start(t, agenttest.Options{})
	c := srv.Client(t)
	deploy(t, c, shard(decnet.Decky{
		Name: "db-1", Services: []string{"mysql"},
		ServiceConfig: map[string]map[string]string{"mysql": {"ROOT_PASSWORD": "s3cr3t-value"}},
	}))
	hc := rawClient(t, srv, srv.PKI.Master)
	resp, err := hc.Get("https://" + srv.Addr + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(buf.Bytes(), []byte("s3cr3t-value")) || bytes.Contains(buf.Bytes(), []byte("service_config")) {
		t.Fatalf("/status leaks service_config: %s", buf.Bytes())
	}
}

func TestWrongFingerprintFailsWithoutRetry(t *testing.T) {
	srv := agenttest.Start(t, agenttest.Options{})
	other := srv.PKI.Issue(t, "worker-2", pki.RoleWorker)
	c := srv.Client(t,
		agentclient.WithFingerprint(other.Fingerprint()),
		agentclient.WithRetry(agentclient.RetryPolicy{Max: 5, WaitMin: time.Millisecond, WaitMax: time.Millisecond}))
	_, err := c.Health(t.Context())
	if !errors.Is(err, decnet.ErrFingerprintMismatch) {
		t.Fatalf("err = %v, want ErrFingerprintMismatch", err)
	}
	if n := srv.Conns(); n != 1 {
		t.Fatalf("agent saw %d connections, want exactly 1 (no retry)", n)
	}
	if n := c.Handshakes(); n != 1 {
		t.Fatalf("client ran %d handshakes, want 1", n)
	}
}

func TestImpostorCARejectedAtHandshake(t *testing.T) {
	srv := agenttest.Start(t, agenttest.Options{})
	impostor := agenttest.NewPKI(t, false) // a different CA with its own "master"

	t.Run("client of another CA refuses the worker", func(t *testing.T) {
		before := srv.Conns()
		c := srv.ClientAs(t, impostor.Master,
			agentclient.WithRetry(agentclient.RetryPolicy{Max: 5, WaitMin: time.Millisecond, WaitMax: time.Millisecond}))
		_, err := c.Health(t.Context())
		if !errors.Is(err, decnet.ErrUnauthorized) {
			t.Fatalf("err = %v, want ErrUnauthorized", err)
		}
		if n := srv.Conns() - before; n != 1 {
			t.Fatalf("%d connections, want 1 (no retry)", n)
		}
	})

	t.Run("agent refuses a certificate of another CA", func(t *testing.T) {
		before, hs := srv.Conns(), srv.Agent.Handshakes()
		// Trusts the real CA (so the client side passes) but presents the
		// impostor's master certificate.
		tlsCfg := &tls.Config{
			MinVersion:   tls.VersionTLS13,
			RootCAs:      srv.PKI.Master.CAPool(),
			Certificates: []tls.Certificate{impostor.Master.TLSCertificate()},
			ServerName:   "127.0.0.1",
		}
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}}
		defer hc.CloseIdleConnections()
		c, err := agentclient.New(srv.Addr, agentclient.Credentials{}, agentclient.WithHTTPClient(hc),
			agentclient.WithRetry(agentclient.RetryPolicy{Max: 5, WaitMin: time.Millisecond, WaitMax: time.Millisecond}))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Health(t.Context())
		if !errors.Is(err, decnet.ErrUnauthorized) {
			t.Fatalf("err = %v, want ErrUnauthorized (TLS alert)", err)
		}
		if n := srv.Conns() - before; n != 1 {
			t.Fatalf("%d connections, want 1 (a TLS failure is never retried)", n)
		}
		if srv.Agent.Handshakes() != hs {
			t.Fatalf("the agent completed a handshake with a foreign certificate")
		}
	})
}

func TestWorkerCertificateIsForbidden(t *testing.T) {
	srv := agenttest.Start(t, agenttest.Options{})
	peer := srv.PKI.Issue(t, "worker-2", pki.RoleWorker)
	c := srv.ClientAs(t, peer, agentclient.WithFingerprint(srv.PKI.Worker.Fingerprint()))
	for name, call := range map[string]func() error{
		"health": func() error { _, err := c.Health(t.Context()); return err },
		"mutate": func() error {
			_, err := c.Mutate(t.Context(), "a", []string{"ssh"}, agentclient.MutateOptions{})
			return err
		},
		"self-destruct": func() error { return c.SelfDestruct(t.Context()) },
	} {
		err := call()
		if !errors.Is(err, decnet.ErrUnauthorized) {
			t.Errorf("%s: err = %v, want ErrUnauthorized", name, err)
		}
		var we *decnet.WireError
		if !errors.As(err, &we) || we.Status != http.StatusForbidden {
			t.Errorf("%s: err = %#v, want a 403 WireError", name, err)
		}
	}
}

func TestPinnedMasterOnly(t *testing.T) {
	srv := agenttest.Start(t, agenttest.Options{PinMaster: true})
	// A second, CA-signed master identity that is not the pinned one.
	other := srv.PKI.Issue(t, "decnet-master-2", pki.RoleMaster)
	c := srv.ClientAs(t, other, agentclient.WithFingerprint(srv.PKI.Worker.Fingerprint()))
	_, err := c.Status(t.Context())
	var we *decnet.WireError
	if !errors.As(err, &we) || we.Status != http.StatusForbidden || !errors.Is(err, decnet.ErrUnauthorized) {
		t.Fatalf("err = %v, want 403", err)
	}
	if _, err := srv.Client(t).Status(t.Context()); err != nil {
		t.Fatalf("pinned master: %v", err)
	}
}

func TestMutateNotFound(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv := agenttest.Start(t, agenttest.Options{Metrics: reg})
	c := srv.Client(t, agentclient.WithRetry(agentclient.RetryPolicy{Max: 5, WaitMin: time.Millisecond, WaitMax: time.Millisecond}))

	_, err := c.Mutate(t.Context(), "web-1", []string{"ssh"}, agentclient.MutateOptions{})
	if !errors.Is(err, decnet.ErrNotFound) {
		t.Fatalf("no state: err = %v, want ErrNotFound", err)
	}
	var we *decnet.WireError
	if !errors.As(err, &we) || we.Message != "no active deployment on this worker" {
		t.Fatalf("no state: err = %#v", err)
	}

	deploy(t, c, shard(decnet.Decky{Name: "web-1", Services: []string{"ssh"}}))
	_, err = c.Mutate(t.Context(), "ghost", []string{"ssh"}, agentclient.MutateOptions{})
	if !errors.Is(err, decnet.ErrNotFound) {
		t.Fatalf("ghost: err = %v, want ErrNotFound", err)
	}
	if !errors.As(err, &we) || we.Message != `decky "ghost" not found in worker state` {
		t.Fatalf("ghost: err = %#v", err)
	}
	// 4xx answers are never retried: the agent answered /mutate 2 times.
	if n := requestsTotal(t, reg, "/mutate"); n != 2 {
		t.Fatalf("agent answered /mutate %v times, want 2 (no retries)", n)
	}
}

func TestMutateDryRunChangesNothing(t *testing.T) {
	srv := agenttest.Start(t, agenttest.Options{})
	c := srv.Client(t)
	deploy(t, c, shard(decnet.Decky{Name: "web-1", Services: []string{"ssh", "http", "ftp"}}))
	fake := srv.Engine.(*agenttest.FakeEngine)
	before, err := os.ReadFile(srv.StatePath())
	if err != nil {
		t.Fatal(err)
	}
	callsBefore, idsBefore := fake.Calls(), fake.ContainerIDs()

	res, err := c.Mutate(t.Context(), "web-1", []string{"ssh", "smtp"}, agentclient.MutateOptions{DryRun: true})
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	want := &decnet.MutatePlan{Add: []string{"smtp"}, Remove: []string{"http", "ftp"}, Keep: []string{"ssh"}}
	if !res.DryRun || !cmp.Equal(res.Plan, want) {
		t.Fatalf("dry run result = %+v, plan diff %s", res, cmp.Diff(want, res.Plan))
	}
	after, err := os.ReadFile(srv.StatePath())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatalf("dry run changed the state file")
	}
	if d := cmp.Diff(callsBefore, fake.Calls()); d != "" {
		t.Fatalf("dry run called the engine: %s", d)
	}
	if d := cmp.Diff(idsBefore, fake.ContainerIDs()); d != "" {
		t.Fatalf("dry run changed containers: %s", d)
	}
}

func TestDeployDryRunReturnsPlan(t *testing.T) {
	srv := agenttest.Start(t, agenttest.Options{})
	c := srv.Client(t)
	res, err := c.Deploy(t.Context(), shard(decnet.Decky{Name: "a", Services: []string{"ssh"}}), agentclient.DeployOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if !res.DryRun || res.Plan == nil || len(res.Plan.Deckies) != 1 || res.Plan.Deckies[0].Action != "create" || res.Plan.Deckies[0].IP != "172.30.254.2" {
		t.Fatalf("dry run = %+v", res)
	}
	if _, err := os.Stat(srv.StatePath()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dry run wrote a state file: %v", err)
	}
	if calls := srv.Engine.(*agenttest.FakeEngine).Calls(); len(calls) != 0 {
		t.Fatalf("dry run changed the engine: %v", calls)
	}
}

func TestTeardownAndSelfDestruct(t *testing.T) {
	reaper := &countingReaper{}
	srv := agenttest.Start(t, agenttest.Options{Reaper: reaper})
	c := srv.Client(t)
	deploy(t, c, shard(decnet.Decky{Name: "a", Services: []string{"ssh"}}, decnet.Decky{Name: "b", Services: []string{"http"}}))
	if err := c.Teardown(t.Context(), "ghost"); !errors.Is(err, decnet.ErrNotFound) {
		t.Fatalf("teardown ghost: %v", err)
	}
	if err := c.Teardown(t.Context(), "a"); err != nil {
		t.Fatalf("teardown a: %v", err)
	}
	st, err := c.Status(t.Context())
	if err != nil || len(st.Deckies) != 1 || st.Deckies[0].Name != "b" {
		t.Fatalf("status after teardown a = %+v, %v", st, err)
	}
	if err := c.Teardown(t.Context(), ""); err != nil {
		t.Fatalf("teardown all: %v", err)
	}
	if st, err := c.Status(t.Context()); err != nil || st.Deployed {
		t.Fatalf("status after teardown all = %+v, %v", st, err)
	}
	if err := c.SelfDestruct(t.Context()); err != nil {
		t.Fatalf("self-destruct: %v", err)
	}
	if reaper.n.Load() != 1 {
		t.Fatalf("reaper called %d times", reaper.n.Load())
	}
}

type countingReaper struct{ n atomic.Int64 }

func (r *countingReaper) SelfDestruct(context.Context) error { r.n.Add(1); return nil }

// TestTransientFailuresRetryOnlyIdempotentCalls dials a listener that
// accepts and immediately closes every connection: the idempotent Health is
// attempted 1+Max times, SelfDestruct (which may have reached the agent) once.
func TestTransientFailuresRetryOnlyIdempotentCalls(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			_ = conn.Close()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	p := agenttest.NewPKI(t, false)
	c, err := agentclient.New(ln.Addr().String(), agentclient.Credentials{Bundle: p.Master},
		agentclient.WithFingerprint(p.Worker.Fingerprint()),
		agentclient.WithRetry(agentclient.RetryPolicy{Max: 2, WaitMin: time.Millisecond, WaitMax: 2 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	_, err = c.Health(t.Context())
	if !errors.Is(err, decnet.ErrUnavailable) {
		t.Fatalf("health: err = %v, want ErrUnavailable", err)
	}
	if n := accepted.Load(); n != 3 {
		t.Fatalf("health attempted %d times, want 3 (1 + 2 retries)", n)
	}
	accepted.Store(0)
	if err := c.SelfDestruct(t.Context()); !errors.Is(err, decnet.ErrUnavailable) {
		t.Fatalf("self-destruct: err = %v, want ErrUnavailable", err)
	}
	if n := accepted.Load(); n != 1 {
		t.Fatalf("self-destruct attempted %d times, want 1", n)
	}
}

func TestResponseSizeCapped(t *testing.T) {
	srv := agenttest.Start(t, agenttest.Options{})
	c := srv.Client(t, agentclient.WithMaxResponseBytes(16))
	if _, err := c.Health(t.Context()); !errors.Is(err, decnet.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable for an oversized response", err)
	}
}

func TestResponsesDecodeLeniently(t *testing.T) {
	// A newer agent may add fields; the client ignores them. Exercised on
	// the decoder the client uses for every response.
	var h decnet.HealthResponse
	if err := decnet.DecodeLenient([]byte(`{"status":"ok","version":"9.9.9","protocol":2,"new_field":{"x":1}}`), &h); err != nil || h.Protocol != 2 {
		t.Fatalf("lenient decode: %+v %v", h, err)
	}
}

func TestNewRejectsBadInput(t *testing.T) {
	p := agenttest.NewPKI(t, false)
	for _, addr := range []string{"", "http://127.0.0.1:1", "https://127.0.0.1:1/path", "https://"} {
		if _, err := agentclient.New(addr, agentclient.Credentials{Bundle: p.Master}); !errors.Is(err, decnet.ErrInvalid) {
			t.Errorf("New(%q): err = %v, want ErrInvalid", addr, err)
		}
	}
	if _, err := agentclient.New("127.0.0.1:1", agentclient.Credentials{}); !errors.Is(err, decnet.ErrInvalid) {
		t.Errorf("New without a bundle: err = %v, want ErrInvalid", err)
	}
	if _, err := agentclient.New("127.0.0.1:1", agentclient.Credentials{Bundle: p.Master}, agentclient.WithFingerprint("nothex")); !errors.Is(err, decnet.ErrInvalid) {
		t.Errorf("New with a bad pin: err = %v, want ErrInvalid", err)
	}
	// A pin the client could not enforce is refused, not ignored.
	if _, err := agentclient.New("127.0.0.1:1", agentclient.Credentials{}, agentclient.WithHTTPClient(&http.Client{}),
		agentclient.WithFingerprint(p.Worker.Fingerprint())); !errors.Is(err, decnet.ErrInvalid) {
		t.Errorf("New with WithHTTPClient and a pin: err = %v, want ErrInvalid", err)
	}
	// An empty pin (a host row without a fingerprint) must not silently
	// mean "any worker of the CA".
	for _, fp := range []string{"", "  "} {
		if _, err := agentclient.New("127.0.0.1:1", agentclient.Credentials{Bundle: p.Master}, agentclient.WithFingerprint(fp)); !errors.Is(err, decnet.ErrInvalid) {
			t.Errorf("New with pin %q: err = %v, want ErrInvalid", fp, err)
		}
	}
	c, err := agentclient.New("127.0.0.1:1", agentclient.Credentials{Bundle: p.Master})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Mutate(t.Context(), "a", nil, agentclient.MutateOptions{}); !errors.Is(err, decnet.ErrInvalid) {
		t.Errorf("Mutate with no services: err = %v, want ErrInvalid", err)
	}
	if _, err := c.Mutate(t.Context(), "Bad Name", []string{"ssh"}, agentclient.MutateOptions{}); !errors.Is(err, decnet.ErrInvalid) {
		t.Errorf("Mutate with a bad name: err = %v, want ErrInvalid", err)
	}
}

// rawClient is an http.Client presenting b that trusts the swarm CA.
func rawClient(t *testing.T, srv *agenttest.Server, b *pki.Bundle) *http.Client {
	t.Helper()
	cfg, err := pki.ClientTLSConfig(b, pki.ExpectPeer{Role: pki.RoleWorker, Fingerprint: srv.PKI.Worker.Fingerprint()})
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	t.Cleanup(hc.CloseIdleConnections)
	return hc
}

func requestsTotal(t *testing.T, reg *prometheus.Registry, path string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "decnet_agent_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "path" && l.GetValue() == path {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}
