package engine_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/engine"
)

var fastRetry = engine.RetryPolicy{Attempts: 3, Base: time.Millisecond, Max: 4 * time.Millisecond}

// fakeDaemon is an httptest stand-in for the Engine API: /_ping answers,
// GET /networks answers "[]", GET /containers/json answers with the statuses
// in codes, one per call, then 200 "[]" for good.
func fakeDaemon(t *testing.T, codes ...int) (host string, calls *atomic.Int32) {
	t.Helper()
	calls = &atomic.Int32{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/_ping") {
			w.Header().Set("Api-Version", "1.41")
			w.WriteHeader(http.StatusOK)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/networks") {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`[]`))
			return
		}
		if !strings.HasSuffix(r.URL.Path, "/containers/json") {
			http.NotFound(w, r)
			return
		}
		n := int(calls.Add(1))
		w.Header().Set("Content-Type", "application/json")
		if n <= len(codes) && codes[n-1] != http.StatusOK {
			w.WriteHeader(codes[n-1])
			_, _ = w.Write([]byte(`{"message":"fake failure"}`))
			return
		}
		_, _ = w.Write([]byte(`[]`))
	}))
	t.Cleanup(srv.Close)
	return "tcp://" + srv.Listener.Addr().String(), calls
}

func fakeEngine(t *testing.T, host string) *engine.Engine {
	t.Helper()
	e, err := engine.New(engine.Config{Host: host, Project: "dnt-fake", Retry: fastRetry})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func TestRetryTransient(t *testing.T) {
	host, calls := fakeDaemon(t, http.StatusServiceUnavailable, http.StatusInternalServerError)
	e := fakeEngine(t, host)
	projects, err := e.Projects(context.Background())
	if err != nil || len(projects) != 0 {
		t.Fatalf("Projects = %v, %v; want success after two transient failures", projects, err)
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("daemon saw %d calls, want 3 (two retries)", n)
	}
}

func TestRetryGivesUp(t *testing.T) {
	host, calls := fakeDaemon(t, 503, 503, 503, 503, 503)
	e := fakeEngine(t, host)
	_, err := e.Projects(context.Background())
	if !errors.Is(err, decnet.ErrUnavailable) {
		t.Fatalf("Projects = %v, want ErrUnavailable", err)
	}
	if n := calls.Load(); n != int32(fastRetry.Attempts) {
		t.Fatalf("daemon saw %d calls, want %d", n, fastRetry.Attempts)
	}
}

func TestNoRetryPermanent(t *testing.T) {
	for code, class := range map[int]error{
		http.StatusBadRequest: decnet.ErrInvalid,
		http.StatusNotFound:   decnet.ErrNotFound,
		http.StatusConflict:   decnet.ErrConflict,
	} {
		host, calls := fakeDaemon(t, code)
		e := fakeEngine(t, host)
		_, err := e.Projects(context.Background())
		if !errors.Is(err, class) {
			t.Errorf("status %d: err = %v, want %v", code, err, class)
		}
		if n := calls.Load(); n != 1 {
			t.Errorf("status %d: daemon saw %d calls, want 1 (no retry)", code, n)
		}
	}
}

func TestUnreachableDaemon(t *testing.T) {
	// A unix socket that was listening and is closed: nothing answers.
	sock := filepath.Join(t.TempDir(), "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	_ = ln.Close()
	e := fakeEngine(t, "unix://"+sock)
	ctx := context.Background()
	if err := e.Ping(ctx); !errors.Is(err, decnet.ErrUnavailable) {
		t.Fatalf("Ping = %v, want ErrUnavailable", err)
	}
	cfg := decnet.Config{Mode: decnet.ModeUnihost, Network: decnet.Network{Driver: decnet.DriverBridge, Subnet: mustPrefix("10.240.0.0/24")},
		Deckies: []decnet.Decky{{Name: "web", Services: []string{"ssh"}}}}
	if err := e.Apply(ctx, cfg); !errors.Is(err, decnet.ErrUnavailable) {
		t.Fatalf("Apply = %v, want ErrUnavailable", err)
	}
	if _, err := e.Status(ctx, cfg); !errors.Is(err, decnet.ErrUnavailable) {
		t.Fatalf("Status = %v, want ErrUnavailable", err)
	}
}

func TestNewRejects(t *testing.T) {
	for name, cfg := range map[string]engine.Config{
		"project":     {Project: "Decnet Prod"},
		"workdir":     {WorkDir: "relative/dir"},
		"composefile": {ComposeFile: "x.yml"},
		"concurrency": {Concurrency: -1},
		"host":        {Host: "ftp://nowhere"},
		"retry":       {Retry: engine.RetryPolicy{Attempts: 2, Base: -time.Millisecond}},
	} {
		if e, err := engine.New(cfg); !errors.Is(err, decnet.ErrInvalid) {
			if e != nil {
				_ = e.Close()
			}
			t.Errorf("%s: New = %v, want ErrInvalid", name, err)
		}
	}
}

// TestBuildFailureIsInvalid: a build the daemon reports as failed (in its
// message stream, after a 200) is decnet.ErrInvalid, not a daemon outage.
func TestBuildFailureIsInvalid(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/_ping"):
			w.Header().Set("Api-Version", "1.41")
		case strings.HasSuffix(r.URL.Path, "/build"):
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"stream":"Step 1/3 : FROM scratch\n"}` + "\n" +
				`{"errorDetail":{"message":"COPY failed"},"error":"COPY failed"}` + "\n"))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	e := fakeEngine(t, "tcp://"+srv.Listener.Addr().String())
	bin := filepath.Join(t.TempDir(), "tool")
	if err := os.WriteFile(bin, []byte("#!/bin/true\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	err := e.BuildImage(context.Background(), engine.ImageSpec{Tag: "dnt-fail:1", Binary: bin})
	if !errors.Is(err, decnet.ErrInvalid) || errors.Is(err, decnet.ErrUnavailable) {
		t.Fatalf("BuildImage = %v, want ErrInvalid", err)
	}
}
