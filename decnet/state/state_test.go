package state

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.uber.org/goleak"

	"github.com/decnet-swarm/sdk/decnet"
)

// Child process modes: the test binary re-executes itself with these set.
const (
	envChild = "DECNET_STATE_TEST_CHILD"
	envDir   = "DECNET_STATE_TEST_DIR"
)

func TestMain(m *testing.M) {
	switch os.Getenv(envChild) {
	case "":
		goleak.VerifyTestMain(m)
	case "lock":
		os.Exit(childLock(os.Getenv(envDir)))
	case "saver":
		os.Exit(childSaver(os.Getenv(envDir)))
	default:
		os.Exit(3)
	}
}

// childLock takes the lock, says "locked" on stdout, holds it until stdin is
// closed, then releases it and says "released".
func childLock(dir string) int {
	s, err := Open(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	unlock, err := s.Lock(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("locked")
	_, _ = io.Copy(io.Discard, os.Stdin)
	unlock()
	fmt.Println("released")
	return 0
}

// childSaver takes the lock and saves the two big states alternately, forever,
// saying "ready" on stdout after the first save. It is SIGKILLed by the test.
func childSaver(dir string) int {
	s, err := Open(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	unlock, err := s.Lock(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer unlock()
	a, b := bigState("a", 150), bigState("b", 260)
	for i := 0; ; i++ {
		st := a
		if i%2 == 1 {
			st = b
		}
		if err := s.Save(ctx, st); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if i == 0 {
			fmt.Println("ready")
		}
	}
}

func bigState(prefix string, n int) *State {
	cfg := decnet.Config{
		Mode: decnet.ModeSwarm,
		Network: decnet.Network{
			Driver:  decnet.DriverBridge,
			Subnet:  netip.MustParsePrefix("10.20.0.0/16"),
			Gateway: netip.MustParseAddr("10.20.0.1"),
		},
		MutateInterval: decnet.Interval(17 * time.Minute),
	}
	for i := range n {
		cfg.Deckies = append(cfg.Deckies, decnet.Decky{
			Name:     fmt.Sprintf("%s-decky-%03d", prefix, i),
			Hostname: fmt.Sprintf("%s-host-%03d.corp.example", prefix, i),
			IP:       netip.AddrFrom4([4]byte{10, 20, byte(i / 250), byte(2 + i%250)}),
			Services: []string{"ssh", "http", "smb"},
			OS:       decnet.OSWindows,
			ServiceConfig: map[string]map[string]string{
				"ssh": {"BANNER": strings.Repeat(prefix, 64)},
			},
			LastMutated: time.Date(2026, 1, 2, 3, 4, 5, i, time.UTC),
		})
	}
	return &State{
		Config:      cfg,
		ComposePath: "/var/lib/decnet/" + prefix + "-compose.yml",
		UpdatedAt:   time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC),
	}
}

var cmpState = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})

func openTemp(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRoundTrip(t *testing.T) {
	ctx := t.Context()
	s := openTemp(t)
	if _, err := s.Load(ctx); !errors.Is(err, decnet.ErrNotFound) {
		t.Fatalf("Load of an empty store: %v, want ErrNotFound", err)
	}
	want := bigState("x", 3)
	if err := s.Save(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got, cmpState); d != "" {
		t.Fatalf("round trip (-want +got):\n%s", d)
	}
	// A second save replaces the first entirely.
	want2 := bigState("y", 1)
	if err := s.Save(ctx, want2); err != nil {
		t.Fatal(err)
	}
	got, err = s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want2, got, cmpState); d != "" {
		t.Fatalf("second round trip (-want +got):\n%s", d)
	}
	if err := s.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx); !errors.Is(err, decnet.ErrNotFound) {
		t.Fatalf("Load after Clear: %v, want ErrNotFound", err)
	}
	if err := s.Clear(ctx); err != nil {
		t.Fatalf("Clear of an absent state: %v", err)
	}
	// No temporary file is left behind.
	entries, err := os.ReadDir(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != LockFileName {
			t.Errorf("unexpected file %s left in the state directory", e.Name())
		}
	}
}

func TestOnDiskFormat(t *testing.T) {
	s := openTemp(t)
	if err := s.Save(t.Context(), &State{ComposePath: "/var/lib/decnet/c.yml"}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"version":1`, `"config":`, `"compose_path":"/var/lib/decnet/c.yml"`} {
		if !strings.Contains(string(data), key) {
			t.Errorf("state file %s lacks %s", data, key)
		}
	}
}

func TestCorruptFileIsNamed(t *testing.T) {
	s := openTemp(t)
	good, err := jsonOf(bigState("g", 2))
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"empty":            "",
		"garbage":          "\x00\x01 not json",
		"truncated":        good[:len(good)/2],
		"trailing":         good + `{"version":1}`,
		"trailing brace":   good + `}`,
		"trailing bracket": good + `]`,
		"no version":       `{"config":{"mode":"swarm"}}`,
		"unknown version":  `{"version":99,"config":{}}`,
		"wrong type":       `{"version":1,"config":[]}`,
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(s.Path(), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := s.Load(t.Context())
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Load: %v, want ErrCorrupt", err)
			}
			var ce *CorruptError
			if !errors.As(err, &ce) || ce.Path != s.Path() {
				t.Fatalf("Load: %v does not carry the path %s", err, s.Path())
			}
			if !strings.Contains(err.Error(), s.Path()) {
				t.Errorf("message %q does not name the file", err)
			}
			if errors.Is(err, decnet.ErrNotFound) || errors.Is(err, decnet.ErrInvalid) {
				t.Errorf("corrupt file classified as not found or invalid: %v", err)
			}
		})
	}
	// The control: the same file well-formed loads.
	if err := os.WriteFile(s.Path(), []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(t.Context()); err != nil {
		t.Fatalf("well-formed file: %v", err)
	}
}

func jsonOf(st *State) (string, error) {
	dir, err := os.MkdirTemp("", "decnet-state-json-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	s, err := Open(dir)
	if err != nil {
		return "", err
	}
	if err := s.Save(context.Background(), st); err != nil {
		return "", err
	}
	b, err := os.ReadFile(s.Path())
	return string(b), err
}

func TestOpenRefusesRelativeDir(t *testing.T) {
	name := fmt.Sprintf("decnet-state-relative-%d", rand.Int64())
	for _, dir := range []string{"", name, "./" + name, filepath.Join(name, "x")} {
		_, err := Open(dir)
		if !errors.Is(err, decnet.ErrInvalid) {
			t.Errorf("Open(%q): %v, want ErrInvalid", dir, err)
		}
	}
	if _, err := os.Stat(name); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused relative directory was created: %v", err)
	}
}

func TestOpenRefusesFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(f); err == nil {
		t.Fatal("Open on a regular file succeeded")
	}
}

func TestModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, filepath.Dir(dir)} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if m := fi.Mode().Perm(); m != 0o700 {
			t.Errorf("%s mode %o, want 0700", d, m)
		}
	}
	unlock, err := s.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if err := s.Save(t.Context(), bigState("m", 1)); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{s.Path(), filepath.Join(dir, LockFileName)} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if m := fi.Mode().Perm(); m != 0o600 {
			t.Errorf("%s mode %o, want 0600", f, m)
		}
	}
}

func TestLockInProcess(t *testing.T) {
	s := openTemp(t)
	unlock, err := s.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// A second locker waits, and gives up when its ctx ends.
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.Lock(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second Lock while held: %v, want DeadlineExceeded", err)
	}
	// A waiter blocked on the lock gets it once it is released.
	got := make(chan error, 1)
	go func() {
		u, err := s.Lock(t.Context())
		if err == nil {
			u()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("waiter got the lock while it was held: %v", err)
	default:
	}
	unlock()
	unlock() // idempotent
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	// Another Store on the same directory is excluded by the lock file.
	s2, err := Open(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	unlock, err = s.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel2()
	if _, err := s2.Lock(ctx2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock through a second Store while held: %v, want DeadlineExceeded", err)
	}
	unlock()
	u2, err := s2.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	u2()
}

func TestLockSerialisesGoroutines(t *testing.T) {
	s := openTemp(t)
	const n = 8
	inside := 0
	errs := make(chan error, n)
	for range n {
		go func() {
			u, err := s.Lock(t.Context())
			if err != nil {
				errs <- err
				return
			}
			inside++
			if inside != 1 {
				err = fmt.Errorf("%d holders at once", inside)
			}
			inside--
			u()
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// child starts the test binary in a child mode on dir, with stdout piped.
func child(t *testing.T, mode, dir string) (*exec.Cmd, *bufio.Reader, io.WriteCloser) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+mode, envDir+"="+dir)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd, bufio.NewReader(stdout), stdin
}

func expectLine(t *testing.T, r *bufio.Reader, want string) {
	t.Helper()
	line, err := r.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != want {
		t.Fatalf("child said %q (%v), want %q", line, err, want)
	}
}

func TestLockExcludesAnotherProcess(t *testing.T) {
	s := openTemp(t)
	cmd, out, in := child(t, "lock", s.Dir())
	expectLine(t, out, "locked")

	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := s.Lock(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock while another process holds it: %v, want DeadlineExceeded", err)
	}
	// The failed attempt left the in-process lock free: release the child
	// and the lock is ours.
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	expectLine(t, out, "released")
	ctx2, cancel2 := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel2()
	unlock, err := s.Lock(ctx2)
	if err != nil {
		t.Fatalf("Lock after the other process released it: %v", err)
	}
	unlock()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
}

// TestCrashDuringSave SIGKILLs a process that saves two large states in a
// loop at a random moment, many times, and checks that the file always loads
// and equals one of the two states exactly.
func TestCrashDuringSave(t *testing.T) {
	iterations := 200
	if testing.Short() {
		iterations = 30
	}
	s := openTemp(t)
	ctx := t.Context()
	a, b := bigState("a", 150), bigState("b", 260)
	if err := s.Save(ctx, a); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second) // bounded on a loaded machine
	midSave, sawA, sawB := 0, 0, 0
	for i := range iterations {
		if time.Now().After(deadline) {
			t.Logf("stopped after %d iterations (time bound)", i)
			iterations = i
			break
		}
		cmd, out, _ := child(t, "saver", s.Dir())
		expectLine(t, out, "ready")
		// The experiment: let the loop run for a random moment, then kill it.
		time.Sleep(time.Duration(rand.IntN(25000)) * time.Microsecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()

		temps, _ := filepath.Glob(filepath.Join(s.Dir(), tempPattern))
		if len(temps) > 0 {
			midSave++
		}
		// The dead child's lock was released by the kernel; taking it also
		// removes the temporary file the killed Save left behind.
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		unlock, err := s.Lock(lctx)
		cancel()
		if err != nil {
			t.Fatalf("iteration %d: lock after kill: %v", i, err)
		}
		got, err := s.Load(ctx)
		unlock()
		if err != nil {
			t.Fatalf("iteration %d: state does not load after SIGKILL: %v", i, err)
		}
		switch {
		case cmp.Equal(got, a, cmpState):
			sawA++
		case cmp.Equal(got, b, cmpState):
			sawB++
		default:
			t.Fatalf("iteration %d: state is neither the old nor the new one", i)
		}
		if temps, _ := filepath.Glob(filepath.Join(s.Dir(), tempPattern)); len(temps) > 0 {
			t.Fatalf("iteration %d: stale temporary files after Lock: %v", i, temps)
		}
	}
	t.Logf("%d kills: %d mid-save (temporary file present), loaded a=%d b=%d", iterations, midSave, sawA, sawB)
	if iterations < 20 {
		t.Fatalf("only %d iterations in the time bound", iterations)
	}
	if midSave == 0 {
		t.Fatal("no kill landed in the middle of a save: the test exercised nothing")
	}
	if sawB == 0 {
		t.Fatal("the new state was never observed: no save completed before a kill")
	}
}

func TestSaveRejectionsChangeNothing(t *testing.T) {
	s := openTemp(t)
	want := bigState("keep", 2)
	if err := s.Save(t.Context(), want); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(t.Context(), nil); !errors.Is(err, decnet.ErrInvalid) {
		t.Errorf("Save(nil): %v, want ErrInvalid", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Save(ctx, bigState("new", 1)); !errors.Is(err, context.Canceled) {
		t.Errorf("Save with a cancelled ctx: %v", err)
	}
	if err := s.Clear(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Clear with a cancelled ctx: %v", err)
	}
	after, err := os.ReadFile(s.Path())
	if err != nil || string(after) != string(before) {
		t.Fatalf("a rejected Save or Clear changed the file (%v)", err)
	}
	entries, _ := os.ReadDir(s.Dir())
	for _, e := range entries {
		if e.Name() != FileName {
			t.Errorf("unexpected %s left behind", e.Name())
		}
	}
}

// A temporary file left by a crashed Save is removed by the next Lock, even
// in a directory whose name holds glob metacharacters.
func TestLockRemovesStaleTemps(t *testing.T) {
	for _, name := range []string{"state", "state[1]*?"} {
		s, err := Open(filepath.Join(t.TempDir(), name))
		if err != nil {
			t.Fatal(err)
		}
		stale := filepath.Join(s.Dir(), "."+FileName+".tmp-123")
		other := filepath.Join(s.Dir(), "notes.txt")
		for _, f := range []string{stale, other} {
			if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		unlock, err := s.Lock(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		unlock()
		if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: stale temporary file survived Lock: %v", name, err)
		}
		if _, err := os.Stat(other); err != nil {
			t.Errorf("%s: Lock removed an unrelated file: %v", name, err)
		}
	}
}

// A ctx that has already ended never takes the lock, even a free one.
func TestLockEndedContext(t *testing.T) {
	s := openTemp(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for range 20 {
		unlock, err := s.Lock(ctx)
		if !errors.Is(err, context.Canceled) {
			if err == nil {
				unlock()
			}
			t.Fatalf("Lock with an ended ctx: %v, want context.Canceled", err)
		}
	}
	unlock, err := s.Lock(t.Context())
	if err != nil {
		t.Fatalf("the refused attempts left the lock held: %v", err)
	}
	unlock()
}
