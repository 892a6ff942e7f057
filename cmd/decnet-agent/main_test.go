package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/agent/agenttest"
	"github.com/decnet-swarm/sdk/decnet/agentclient"
	"github.com/decnet-swarm/sdk/decnet/pki"
	"github.com/decnet-swarm/sdk/internal/cli"
)

// binary is decnet-agent built static from this package, for the tests that
// need a real process and real signals.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "decnet-agent-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "decnet-agent")
	cmd := exec.Command("go", "build", "-trimpath", "-o", binary, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build decnet-agent: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	err := Run(t.Context(), args, &out, &errb)
	return out.String(), errb.String(), cli.ExitCode(err)
}

func TestServeRefusesWithoutBundle(t *testing.T) {
	empty := t.TempDir()
	partial := t.TempDir()
	p := agenttest.NewPKI(t, false)
	for _, f := range []string{pki.CACertFile, pki.CertFile} {
		data, err := os.ReadFile(filepath.Join(p.WorkerDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(partial, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ dir, missing string }{
		{empty, filepath.Join(empty, pki.CACertFile)},
		{partial, filepath.Join(partial, pki.KeyFile)},
	} {
		_, stderr, code := run(t, "serve", "--dir", tc.dir, "--state-dir", t.TempDir(), "--listen", "127.0.0.1:0")
		if code != exitUsage {
			t.Errorf("exit code %d, want %d", code, exitUsage)
		}
		lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], tc.missing) {
			t.Errorf("stderr = %q, want one line naming %s", stderr, tc.missing)
		}
	}
	// The real binary too: exit status 2, one line.
	cmd := exec.Command(binary, "serve", "--dir", empty, "--state-dir", t.TempDir())
	var errb bytes.Buffer
	cmd.Stderr = &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitUsage {
		t.Fatalf("binary: %v, want exit status 2", err)
	}
	if n := strings.Count(errb.String(), "\n"); n != 1 || !strings.Contains(errb.String(), filepath.Join(empty, pki.CACertFile)) {
		t.Fatalf("binary stderr = %q", errb.String())
	}
}

func TestLANNetwork(t *testing.T) {
	def, err := lanNetwork(serveOptions{NetworkDriver: "bridge", NetworkName: decnet.DefaultNetworkName})
	if err != nil {
		t.Fatal(err)
	}
	if def.Subnet != netip.MustParsePrefix("172.30.254.0/24") || def.Gateway != netip.MustParseAddr("172.30.254.1") || def.Driver != decnet.DriverBridge {
		t.Fatalf("default LAN = %+v", def)
	}
	mac, err := lanNetwork(serveOptions{NetworkDriver: "macvlan", Parent: "eth0", Subnet: "192.168.1.0/24", Gateway: "192.168.1.254", IPRange: "192.168.1.128/26"})
	if err != nil {
		t.Fatal(err)
	}
	if mac.Pool() != netip.MustParsePrefix("192.168.1.128/26") || mac.Gateway != netip.MustParseAddr("192.168.1.254") {
		t.Fatalf("macvlan LAN = %+v", mac)
	}
	for name, o := range map[string]serveOptions{
		"macvlan without parent": {NetworkDriver: "macvlan", Subnet: "192.168.1.0/24"},
		"macvlan without subnet": {NetworkDriver: "macvlan", Parent: "eth0"},
		"unknown driver":         {NetworkDriver: "overlay"},
		"bad subnet":             {NetworkDriver: "bridge", Subnet: "300.1.1.0/24"},
		"gateway outside":        {NetworkDriver: "bridge", Subnet: "10.1.0.0/24", Gateway: "10.2.0.1"},
		"range outside":          {NetworkDriver: "bridge", Subnet: "10.1.0.0/24", IPRange: "10.2.0.0/28"},
	} {
		_, err := lanNetwork(o)
		var ue cli.UsageError
		if !errors.As(err, &ue) {
			t.Errorf("%s: err = %v, want a usage error", name, err)
		}
	}
}

func TestServeConfigFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "agent.json")
	if err := os.WriteFile(good, []byte(`{"network_driver":"ipvlan","parent":"eth1","subnet":"10.5.0.0/16","listen":"127.0.0.1:9999"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := newServeCmd(&app{stdout: io.Discard, stderr: io.Discard})
	if err := cmd.Flags().Parse([]string{"--listen", "127.0.0.1:7777"}); err != nil {
		t.Fatal(err)
	}
	var flags serveOptions
	flags.Listen, _ = cmd.Flags().GetString("listen")
	flags.NetworkDriver, _ = cmd.Flags().GetString("network-driver")
	o, err := resolveServeOptions(good, flags, cmd.Flags())
	if err != nil {
		t.Fatal(err)
	}
	if o.NetworkDriver != "ipvlan" || o.Parent != "eth1" || o.Subnet != "10.5.0.0/16" || o.Listen != "127.0.0.1:7777" {
		t.Fatalf("merged options = %+v (flag must win over the file)", o)
	}

	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"subnet":"10.5.0.0/16","ip_rang":"10.5.0.0/24"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	p := agenttest.NewPKI(t, false)
	_, stderr, code := run(t, "serve", "--config", bad, "--dir", p.WorkerDir, "--state-dir", t.TempDir())
	if code != exitUsage || !strings.Contains(stderr, "ip_rang") {
		t.Fatalf("unknown config key: code %d stderr %q", code, stderr)
	}
}

func TestVersionAndUnknownCommand(t *testing.T) {
	out, _, code := run(t, "version")
	if code != 0 || out != "decnet-agent "+decnet.Version+" (protocol "+strconv.Itoa(decnet.ProtocolVersion)+")\n" {
		t.Fatalf("version: %d %q", code, out)
	}
	if _, _, code := run(t, "nope"); code != exitUsage {
		t.Fatalf("unknown command: exit %d", code)
	}
	if _, _, code := run(t, "serve", "--no-such-flag"); code != exitUsage {
		t.Fatalf("unknown flag: exit %d", code)
	}
	// A stray argument is bad usage too (exit 2), for every subcommand.
	for _, sub := range []string{"serve", "version", "pause", "reap"} {
		if _, stderr, code := run(t, sub, "stray"); code != exitUsage || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%s stray: exit %d, stderr %q; want %d and one line", sub, code, stderr, exitUsage)
		}
	}
}

// notifySocket is a unixgram socket playing systemd's NOTIFY_SOCKET.
type notifySocket struct {
	path string
	conn *net.UnixConn
}

func newNotifySocket(t *testing.T) *notifySocket {
	t.Helper()
	dir, err := os.MkdirTemp("", "ntf")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &notifySocket{path: path, conn: conn}
}

// expect reads datagrams until one equals want or the deadline passes.
func (n *notifySocket) expect(t *testing.T, want string, within time.Duration) {
	t.Helper()
	if err := n.conn.SetReadDeadline(time.Now().Add(within)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for {
		k, err := n.conn.Read(buf)
		if err != nil {
			t.Fatalf("waiting for %q on NOTIFY_SOCKET: %v", want, err)
		}
		for _, line := range strings.Split(string(buf[:k]), "\n") {
			if line == want {
				return
			}
		}
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func vmRSSKiB(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// served is a decnet-agent serve process under a fake systemd notify socket.
type served struct {
	cmd    *exec.Cmd
	ns     *notifySocket
	addr   string
	pki    *agenttest.PKI
	logs   chan []string // stderr lines, once the process has exited
	exited bool
}

// startServe runs the binary's serve with a pinned-master bundle on a free
// loopback port plus extra flags, and waits for READY=1.
func startServe(t *testing.T, extra ...string) *served {
	t.Helper()
	s := &served{ns: newNotifySocket(t), addr: freePort(t), pki: agenttest.NewPKI(t, true), logs: make(chan []string, 1)}
	args := append([]string{"serve", "--dir", s.pki.WorkerDir, "--listen", s.addr, "--state-dir", t.TempDir()}, extra...)
	s.cmd = exec.Command(binary, args...)
	s.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+s.ns.path)
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		var lines []string
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		s.logs <- lines
	}()
	t.Cleanup(func() {
		if !s.exited {
			_ = s.cmd.Process.Kill()
			_ = s.cmd.Wait()
		}
	})
	s.ns.expect(t, "READY=1", 10*time.Second)
	return s
}

// client returns an agentclient for the process, as its master.
func (s *served) client(t *testing.T) *agentclient.Client {
	t.Helper()
	c, err := agentclient.New(s.addr, agentclient.Credentials{Bundle: s.pki.Master}, agentclient.WithFingerprint(s.pki.Worker.Fingerprint()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// term sends SIGTERM, expects STOPPING=1 and a zero exit, and returns the
// log lines.
func (s *served) term(t *testing.T) []string {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	s.ns.expect(t, "STOPPING=1", 10*time.Second)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		s.exited = true
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("agent did not exit within 30s of SIGTERM")
	}
	return <-s.logs
}

// TestServeNotifiesAndStopsOnSIGTERM runs the real binary under a fake
// systemd notify socket: READY=1 once listening, the API answers over mTLS,
// idle RSS stays under 20 MB, SIGTERM sends STOPPING=1 and exits 0.
func TestServeNotifiesAndStopsOnSIGTERM(t *testing.T) {
	// The agent must not touch Docker at start-up: give it none.
	s := startServe(t, "--docker-host", "unix:///nonexistent/docker.sock")
	c := s.client(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := c.Health(ctx); err != nil {
		t.Fatalf("health: %v", err)
	}
	st, err := c.Status(ctx)
	if err != nil || st.Deployed {
		t.Fatalf("status: %+v %v", st, err)
	}
	rss := vmRSSKiB(t, s.cmd.Process.Pid)
	t.Logf("idle VmRSS after start and two requests: %d KiB", rss)
	if rss >= 20*1024 {
		t.Errorf("idle RSS %d KiB, want < 20 MiB", rss)
	}
	_ = c.Close()

	lines := s.term(t)
	var sawStart, sawStop, sawRequest bool
	for _, l := range lines {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) != nil {
			t.Errorf("non-JSON log line %q", l)
			continue
		}
		switch rec["msg"] {
		case "agent_starting":
			sawStart = true
		case "agent_stopped":
			sawStop = true
		case "agent_request":
			sawRequest = rec["peer_cn"] == pki.MasterName
		}
	}
	if !sawStart || !sawStop || !sawRequest {
		t.Fatalf("log lacks start/stop/request lines:\n%s", strings.Join(lines, "\n"))
	}
}

// TestPauseExitsOnSignal runs pause in this process and delivers a real
// SIGTERM, then a real SIGINT, to it.
func TestPauseExitsOnSignal(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		ready := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			pause(func() { close(ready) })
		}()
		<-ready
		if err := syscall.Kill(os.Getpid(), sig); err != nil {
			t.Fatal(err)
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("pause did not return after %v", sig)
		}
	}
}

// TestReapChildren makes a zombie child of this test process and checks
// that reapChildren collects it.
func TestReapChildren(t *testing.T) {
	cmd := exec.Command("/bin/true")
	if err := cmd.Start(); err != nil {
		t.Skipf("no /bin/true: %v", err)
	}
	pid := cmd.Process.Pid
	deadline := time.Now().Add(5 * time.Second)
	for procState(pid) != "Z" {
		if time.Now().After(deadline) {
			t.Fatalf("child never became a zombie (state %q)", procState(pid))
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
	reapChildren()
	if s := procState(pid); s != "" {
		t.Fatalf("child still exists in state %q after reapChildren", s)
	}
}

func procState(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// pid (comm) S ...
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 >= len(data) {
		return ""
	}
	return string(data[i+2])
}
