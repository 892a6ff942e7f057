// Package dockertest is the support for tests that run against the real
// Docker Engine (engine, agent, reaper, mutator tests). It goes through
// decnet/engine, never through the moby client directly.
//
// A typical test:
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		dockertest.RemoveImages() // this process's test images
//		os.Exit(code)
//	}
//
//	func TestSomething(t *testing.T) {
//		dockertest.Require(t)                   // skip (or fail in CI) without Docker
//		img := dockertest.Images(t)             // pause + decoy images, built once per process
//		project := dockertest.Project(t, "agent") // "dnt-agent-<rand>", removed in t.Cleanup
//		eng := dockertest.NewEngine(t, engine.Config{
//			Project:   project,
//			Catalog:   dockertest.Catalog(t, img, "ssh", "http", "smtp"),
//			BaseImage: img.Pause,
//		})
//		cfg := decnet.Config{
//			Mode:    decnet.ModeUnihost,
//			Network: dockertest.Network(t), // bridge, free /24 of 10.240.0.0/12, unique name
//			Deckies: []decnet.Decky{{Name: dockertest.Name(t, "web"), Services: []string{"ssh"}}},
//		}
//		if err := eng.Apply(ctx, cfg); err != nil { … }
//		banner, err := dockertest.Banner(ctx, "10.240.x.y:22") // "ssh <decky> <hostname>"
//	}
//
// Rules the helpers enforce or help with, because packages and other
// engineers run Docker tests at the same time on one daemon:
//   - Docker unreachable: Require skips with the reason, or fails when
//     DECNET_REQUIRE_DOCKER=1 (CI).
//   - Every test uses its own compose project (Project): names start with
//     "dnt-", never "decnet" (the reaper removes decnet projects). Its
//     containers and networks are removed in t.Cleanup, even on failure.
//   - Container names are global on a daemon: name deckies with Name, which
//     adds a random suffix (the base container is named after the decky).
//   - Network names and subnets are global too: Network gives a unique name
//     and a subnet from Subnet, which reserves a free /24 inside 10.240.0.0/12
//     with a lock file (flock, released at cleanup or when the process dies)
//     and checks it against every Docker network, so concurrent test
//     processes never pick the same one.
//   - Images are built locally (nothing can be pulled): Images builds
//     internal/testdecoy with CGO_ENABLED=0 into FROM scratch images tagged
//     uniquely for this process; call RemoveImages from TestMain.
//
// The decoy image: entrypoint /testdecoy; command "<service>" listens on the
// TCP ports in $DECOY_PORTS (Catalog sets them to the service's standard
// ports) inside the base's network namespace and greets each connection
// with "<service> <NODE_NAME> <HOSTNAME>\n". The pause image runs
// "/testdecoy pause" (sleeps until SIGTERM, reaps children).
package dockertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"go.uber.org/goleak"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/engine"
)

// RequireEnv is the environment variable that turns a missing Docker into a
// test failure instead of a skip (CI sets it to 1).
const RequireEnv = "DECNET_REQUIRE_DOCKER"

// Range is the address range test subnets are taken from.
var Range = netip.MustParsePrefix("10.240.0.0/12")

// cleanupTimeout bounds every cleanup's Docker calls.
const cleanupTimeout = 2 * time.Minute

var (
	pingOnce sync.Once
	pingErr  error
)

// Require skips the test when the Docker daemon (the default socket) does
// not answer, or fails it when DECNET_REQUIRE_DOCKER=1. It returns an engine
// for housekeeping calls (Subnets, images, RemoveProject); its project is a
// throwaway name, so do not Apply with it; use NewEngine. The engine is
// closed at cleanup.
func Require(t testing.TB) *engine.Engine {
	t.Helper()
	pingOnce.Do(func() {
		e, err := engine.New(engine.Config{Project: "dnt-ping"})
		if err != nil {
			pingErr = err
			return
		}
		defer e.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		pingErr = e.Ping(ctx)
	})
	if pingErr != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("docker is required (%s=1) but unreachable: %v", RequireEnv, pingErr)
		}
		t.Skipf("docker unreachable, skipping: %v", pingErr)
	}
	return NewEngine(t, engine.Config{Project: "dnt-admin-" + randHex(4)})
}

// NewEngine returns an engine.New(cfg) on the local daemon, closed at
// cleanup. It does not skip: call Require first.
func NewEngine(t testing.TB, cfg engine.Config) *engine.Engine {
	t.Helper()
	e, err := engine.New(cfg)
	if err != nil {
		t.Fatalf("engine.New: %v", err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func sanitize(prefix string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(prefix) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-' {
			b.WriteRune(r)
		}
	}
	s := strings.Trim(b.String(), "-")
	if len(s) > 20 {
		s = s[:20]
	}
	if s == "" {
		s = "x"
	}
	return s
}

// Project returns a unique compose project name "dnt-<prefix>-<rand>" and
// registers a cleanup that removes every container and network of that
// project (even when the test fails).
func Project(t testing.TB, prefix string) string {
	t.Helper()
	name := "dnt-" + sanitize(prefix) + "-" + randHex(4)
	t.Cleanup(func() {
		e, err := engine.New(engine.Config{Project: name})
		if err != nil {
			t.Errorf("cleanup project %s: %v", name, err)
			return
		}
		defer e.Close()
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if err := e.RemoveProject(ctx, name); err != nil {
			t.Errorf("cleanup project %s: %v", name, err)
		}
	})
	return name
}

// Name returns a unique, valid decky name "<prefix>-<rand>" (container
// names are global on the daemon, and the base container is named after
// the decky).
func Name(t testing.TB, prefix string) string {
	t.Helper()
	return sanitize(prefix) + "-" + randHex(3)
}

// Subnet reserves a free /24 inside Range (10.240.0.0/12) that no Docker
// network uses, for the duration of the test. Reservation is a flock on a
// file under the temp directory, so concurrent test processes (other
// packages, other engineers) never get the same subnet; a subnet that
// overlaps an existing Docker network is skipped and another tried.
func Subnet(t testing.TB) netip.Prefix {
	t.Helper()
	e := Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, release, err := ReserveSubnet(ctx, e)
	if err != nil {
		t.Fatalf("reserve a test subnet: %v", err)
	}
	t.Cleanup(release)
	return p
}

// ReserveSubnet is Subnet for programs (benchmarks): it returns a free /24
// of Range and the function that releases the reservation.
func ReserveSubnet(ctx context.Context, e *engine.Engine) (netip.Prefix, func(), error) {
	dir := filepath.Join(os.TempDir(), "decnet-dockertest-subnets")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return netip.Prefix{}, nil, err
	}
	used, err := e.Subnets(ctx)
	if err != nil {
		return netip.Prefix{}, nil, err
	}
	n := 1 << (24 - Range.Bits()) // /24s in the range
	start := int(randUint32() % uint32(n))
	for i := range n {
		idx := (start + i) % n
		base := Range.Addr().As4()
		base[1] |= byte(idx >> 8)
		base[2] = byte(idx)
		p := netip.PrefixFrom(netip.AddrFrom4(base), 24)
		if overlaps(used, p) {
			continue
		}
		f, ok := lock(filepath.Join(dir, strings.ReplaceAll(p.Addr().String(), ".", "_")+".lock"))
		if !ok {
			continue
		}
		// Re-check under the lock: a network may have appeared meanwhile.
		if used, err = e.Subnets(ctx); err != nil {
			_ = f.Close()
			return netip.Prefix{}, nil, err
		}
		if overlaps(used, p) {
			_ = f.Close()
			continue
		}
		return p, func() { _ = f.Close() }, nil
	}
	return netip.Prefix{}, nil, fmt.Errorf("no free /24 left in %s", Range)
}

func overlaps(used []netip.Prefix, p netip.Prefix) bool {
	for _, u := range used {
		if u.Overlaps(p) {
			return true
		}
	}
	return false
}

func randUint32() uint32 {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// lock takes a non-blocking exclusive flock on path; the lock lives as long
// as the returned file is open (or the process).
func lock(path string) (*os.File, bool) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, false
	}
	return f, true
}

// Network returns a bridge network on a fresh Subnet with gateway .1 and a
// unique Docker name "dnt-net-<rand>". The engine creates it on Apply; it is
// removed with the project (Project's cleanup).
func Network(t testing.TB) decnet.Network {
	t.Helper()
	p := Subnet(t)
	return decnet.Network{
		Driver:  decnet.DriverBridge,
		Subnet:  p,
		Gateway: p.Addr().Next(),
		Name:    "dnt-net-" + randHex(4),
	}
}

// Addr returns the i-th address of a /24 (Addr(p, 10) = a.b.c.10).
func Addr(p netip.Prefix, i int) netip.Addr {
	a := p.Masked().Addr().As4()
	a[3] = byte(i)
	return netip.AddrFrom4(a)
}

// ImageSet names the test images of this process (a Go package cannot
// have both a func and a type called Images).
type ImageSet struct {
	Pause string // base image: runs "/testdecoy pause"
	Decoy string // service image: entrypoint /testdecoy, command = service name
}

var (
	imgMu   sync.Mutex
	imgDone bool
	imgErr  error
	imgs    ImageSet
	imgDir  string
)

// Images builds the test images once per test process (internal/testdecoy
// compiled with CGO_ENABLED=0, then engine.BuildImage FROM scratch) and
// returns their tags, unique to this process. Call RemoveImages from
// TestMain after m.Run.
func Images(t testing.TB) ImageSet {
	t.Helper()
	e := Require(t)
	imgMu.Lock()
	defer imgMu.Unlock()
	if !imgDone {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		var dir string
		imgs, dir, imgErr = BuildImageSet(ctx, e)
		cancel()
		imgDir = dir
		imgDone = true
	}
	if imgErr != nil {
		t.Fatalf("build test images: %v", imgErr)
	}
	return imgs
}

// BuildImageSet is Images for programs (benchmarks): it compiles
// internal/testdecoy into a new temporary directory (returned, for the
// caller to remove) and builds the pause and decoy images with unique tags.
// On error, images already built are removed.
func BuildImageSet(ctx context.Context, e *engine.Engine) (ImageSet, string, error) {
	dir, err := os.MkdirTemp("", "dnt-images-")
	if err != nil {
		return ImageSet{}, "", err
	}
	bin := filepath.Join(dir, "testdecoy")
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		if gobin, err = exec.LookPath("go"); err != nil {
			return ImageSet{}, dir, fmt.Errorf("go tool not found: %w", err)
		}
	}
	cmd := exec.CommandContext(ctx, gobin, "build", "-trimpath", "-o", bin, "github.com/decnet-swarm/sdk/internal/testdecoy")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return ImageSet{}, dir, fmt.Errorf("go build testdecoy: %v: %s", err, out)
	}
	suffix := strconv.Itoa(os.Getpid()) + "-" + randHex(3)
	im := ImageSet{Pause: "dnt-pause:" + suffix, Decoy: "dnt-decoy:" + suffix}
	labels := map[string]string{"decnet.test": "true", "decnet.test.pid": strconv.Itoa(os.Getpid())}
	if err := e.BuildImage(ctx, engine.ImageSpec{Tag: im.Pause, Binary: bin, Entrypoint: []string{"/testdecoy", "pause"}, Labels: labels}); err != nil {
		return ImageSet{}, dir, err
	}
	if err := e.BuildImage(ctx, engine.ImageSpec{Tag: im.Decoy, Binary: bin, Entrypoint: []string{"/testdecoy"}, Labels: labels}); err != nil {
		_ = e.RemoveImage(ctx, im.Pause)
		return ImageSet{}, dir, err
	}
	return im, dir, nil
}

// RemoveImages deletes the images Images built in this process. Call it
// from TestMain after m.Run; it is a no-op when none were built.
func RemoveImages() {
	imgMu.Lock()
	defer imgMu.Unlock()
	if imgDir != "" {
		_ = os.RemoveAll(imgDir)
		imgDir = ""
	}
	if imgs == (ImageSet{}) {
		return
	}
	e, err := engine.New(engine.Config{Project: "dnt-admin"})
	if err != nil {
		return
	}
	defer e.Close()
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	for _, tag := range []string{imgs.Decoy, imgs.Pause} {
		if tag != "" {
			_ = e.RemoveImage(ctx, tag)
		}
	}
	imgs, imgDone, imgErr = ImageSet{}, false, nil
}

// Catalog returns a catalog whose services (names; default: every service
// of decnet.DefaultCatalog) run the decoy image with the service name as the
// command, listening on the service's standard ports (from
// decnet.DefaultCatalog; 10000+i for other names).
func Catalog(t testing.TB, img ImageSet, names ...string) *decnet.Catalog {
	t.Helper()
	c, err := NewCatalog(img, names...)
	if err != nil {
		t.Fatalf("test catalog: %v", err)
	}
	return c
}

// NewCatalog is Catalog for programs (benchmarks).
func NewCatalog(img ImageSet, names ...string) (*decnet.Catalog, error) {
	def := decnet.DefaultCatalog()
	if len(names) == 0 {
		names = def.Names()
	}
	var svcs []decnet.Service
	for i, n := range names {
		ports := []decnet.Port{{Port: uint16(10000 + i), Protocol: "tcp"}}
		if s, ok := def.Lookup(n); ok {
			ports = s.Ports
		}
		list := make([]string, len(ports))
		for j, p := range ports {
			list[j] = strconv.Itoa(int(p.Port))
		}
		svcs = append(svcs, decnet.Service{
			Name:    n,
			Image:   img.Decoy,
			Command: []string{n},
			Ports:   ports,
			Env:     map[string]string{"DECOY_PORTS": strings.Join(list, ",")},
		})
	}
	return decnet.NewCatalog(svcs...)
}

// Banner connects to addr ("ip:port") until it answers or ctx ends, and
// returns the first line the decoy sends ("<service> <NODE_NAME> <HOSTNAME>").
func Banner(ctx context.Context, addr string) (string, error) {
	var d net.Dialer
	var last error
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 256)
			n, rerr := c.Read(buf)
			_ = c.Close()
			if n > 0 {
				return strings.TrimSpace(string(buf[:n])), nil
			}
			err = rerr
		}
		last = err
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", fmt.Errorf("banner %s: %w (last: %v)", addr, ctx.Err(), last)
		case <-t.C:
		}
	}
}

// withCleanup runs the tests, then removes this process's test images.
type withCleanup struct{ m *testing.M }

func (w withCleanup) Run() int {
	code := w.m.Run()
	RemoveImages()
	return code
}

// Main is a TestMain for packages with Docker tests: it runs the tests,
// removes this process's test images and, when every test passed, fails the
// run if goroutines leaked (goleak).
func Main(m *testing.M) { goleak.VerifyTestMain(withCleanup{m}) }
