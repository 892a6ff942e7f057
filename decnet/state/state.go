package state

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/internal/atomicfile"
)

// DefaultDir is the state directory of a production worker.
const DefaultDir = "/var/lib/decnet"

// FileName is the name of the state file inside the state directory.
const FileName = "state.json"

// LockFileName is the name of the lock file inside the state directory. It is
// created once and never removed (removing a lock file races with a waiter).
const LockFileName = "state.lock"

// FormatVersion is the version of the on-disk format this package writes and
// the only one it reads.
const FormatVersion = 1

// tempPattern names the temporary files Save writes before renaming them over
// the state file. They start with a dot so an operator listing the directory
// sees the state file first.
var tempPattern = atomicfile.TempPrefix(FileName) + "*"

// ErrCorrupt is the class of a state file that exists but cannot be used:
// malformed or truncated JSON, trailing data, or a missing or unknown format
// version. It deliberately wraps no decnet class: a corrupt file is a fault of
// the worker (mapped to the internal wire code, HTTP 500); neither a different
// request (ErrInvalid) nor retrying (ErrUnavailable) fixes it, an operator does.
var ErrCorrupt = errors.New("state file corrupt")

// CorruptError reports a state file that cannot be used. It unwraps to
// ErrCorrupt and to the underlying decoding error, if any.
type CorruptError struct {
	Path   string // absolute path of the file
	Reason string // what is wrong, for humans
	Err    error  // the decoding error, may be nil
}

func (e *CorruptError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("state file %s is corrupt: %s: %v", e.Path, e.Reason, e.Err)
	}
	return fmt.Sprintf("state file %s is corrupt: %s", e.Path, e.Reason)
}

// Unwrap returns ErrCorrupt and the decoding error.
func (e *CorruptError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrCorrupt, e.Err}
	}
	return []error{ErrCorrupt}
}

// State is what a worker persists: its desired state.
type State struct {
	// Config is the fleet the worker was last asked to run, with the IPs the
	// worker allocated filled in.
	Config decnet.Config `json:"config"`
	// ComposePath is the absolute path of the compose file written for Config.
	ComposePath string `json:"compose_path,omitempty"`
	// UpdatedAt is when the state was last changed; set by the caller.
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// file is the on-disk envelope of a State.
type file struct {
	Version int `json:"version"`
	*State
}

// Store is a state directory. It is safe for concurrent use.
type Store struct {
	dir      string
	path     string
	lockPath string
	sem      chan struct{} // in-process lock: a token in the channel means held
}

// Open returns the store in dir, creating dir (mode 0700) when it does not
// exist. dir must be absolute; a relative or empty dir is refused with an
// error wrapping decnet.ErrInvalid and nothing is created.
func Open(dir string) (*Store, error) {
	if dir == "" || !filepath.IsAbs(dir) {
		return nil, decnet.Errorf(decnet.ErrInvalid, "state_dir", dir,
			"state directory %q is not an absolute path", dir)
	}
	dir = filepath.Clean(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state directory %s: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("stat state directory %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, decnet.Errorf(decnet.ErrInvalid, "state_dir", dir,
			"state directory %s is not a directory", dir)
	}
	return &Store{
		dir:      dir,
		path:     filepath.Join(dir, FileName),
		lockPath: filepath.Join(dir, LockFileName),
		sem:      make(chan struct{}, 1),
	}, nil
}

// Dir returns the absolute state directory.
func (s *Store) Dir() string { return s.dir }

// Path returns the absolute path of the state file.
func (s *Store) Path() string { return s.path }

// Load reads the state file. When there is none, the error wraps
// decnet.ErrNotFound; when it cannot be used, the error is a *CorruptError
// naming the file and wrapping ErrCorrupt.
func (s *Store) Load(ctx context.Context) (*State, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, decnet.Errorf(decnet.ErrNotFound, "deployment", s.path,
			"no state file at %s", s.path)
	}
	if err != nil {
		return nil, fmt.Errorf("read state file %s: %w", s.path, err)
	}
	return decode(s.path, data)
}

func decode(path string, data []byte) (*State, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &CorruptError{Path: path, Reason: "file is empty"}
	}
	st := &State{}
	f := file{State: st}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&f); err != nil {
		return nil, &CorruptError{Path: path, Reason: "malformed JSON", Err: err}
	}
	// Anything but the end of the input after the value, including a stray
	// "}" or "]" that Token reports as a syntax error, is trailing data.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, &CorruptError{Path: path, Reason: "trailing data after the JSON value"}
	}
	switch f.Version {
	case FormatVersion:
	case 0:
		return nil, &CorruptError{Path: path, Reason: "no format version"}
	default:
		return nil, &CorruptError{Path: path,
			Reason: fmt.Sprintf("unknown format version %d (this build reads %d)", f.Version, FormatVersion)}
	}
	return st, nil
}

// Save replaces the state file with st atomically: it writes a temporary file
// (mode 0600) in the state directory, flushes it to disk, renames it over the
// state file and flushes the directory. After a crash at any point the file
// holds either the previous state or st. Call it while holding Lock.
func (s *Store) Save(ctx context.Context, st *State) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if st == nil {
		return decnet.Errorf(decnet.ErrInvalid, "state", "", "nil state")
	}
	data, err := json.Marshal(file{Version: FormatVersion, State: st})
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	data = append(data, '\n')
	if err := atomicfile.WriteFile(s.dir, FileName, data, 0o600); err != nil {
		return fmt.Errorf("save state file %s: %w", s.path, err)
	}
	return nil
}

// Clear removes the state file (an atomic unlink, then a directory flush).
// Clearing an absent state is not an error. Call it while holding Lock.
func (s *Store) Clear(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove state file %s: %w", s.path, err)
	}
	return atomicfile.SyncDir(s.dir)
}

// Lock takes the store's exclusive lock: first between the goroutines sharing
// this Store, then, through an flock(2) on the lock file, between processes
// and between Stores opened on the same directory. It waits until the lock
// is free or ctx ends (then it returns ctx's error and holds nothing); a ctx
// that has already ended never takes it. The returned unlock releases both;
// it is safe to call more than once.
//
// Temporary files left behind by a writer that crashed mid-Save are removed
// once the lock is held.
func (s *Store) Lock(ctx context.Context) (unlock func(), err error) {
	// An ended ctx never takes the lock, even a free one (select alone
	// would pick at random between the free lock and ctx.Done).
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	release := func() { <-s.sem }
	f, err := os.OpenFile(s.lockPath, os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		release()
		return nil, fmt.Errorf("open state lock %s: %w", s.lockPath, err)
	}
	if err := flockContext(ctx, f); err != nil {
		_ = f.Close()
		release()
		return nil, err
	}
	s.removeStaleTemps()
	var once sync.Once
	return func() {
		once.Do(func() {
			_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
			_ = f.Close()
			release()
		})
	}, nil
}

// flockContext polls a non-blocking exclusive flock until it succeeds or ctx
// ends. The retry interval starts at 1 ms and doubles up to 20 ms.
func flockContext(ctx context.Context, f *os.File) error {
	wait := time.Millisecond
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			return fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, 20*time.Millisecond)
	}
}

// removeStaleTemps matches names inside the directory rather than globbing
// its path, so a directory whose name holds glob metacharacters works too.
func (s *Store) removeStaleTemps() {
	entries, _ := os.ReadDir(s.dir)
	for _, e := range entries {
		if ok, _ := filepath.Match(tempPattern, e.Name()); ok {
			_ = os.Remove(filepath.Join(s.dir, e.Name()))
		}
	}
}
