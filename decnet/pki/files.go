package pki

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/internal/atomicfile"
)

// File names. Every identity directory uses the same names.
const (
	CACertFile            = "ca.crt"             // the CA certificate (PEM)
	CAKeyFile             = "ca.key"             // the CA private key (PEM, CA directory only)
	CertFile              = "tls.crt"            // the identity's certificate (PEM)
	KeyFile               = "tls.key"            // the identity's private key (PEM, PKCS #8)
	MasterFingerprintFile = "master.fingerprint" // optional: the pinned master fingerprint (hex)
)

// File modes.
const (
	DirMode  fs.FileMode = 0o700 // identity and CA directories
	KeyMode  fs.FileMode = 0o600 // private keys
	CertMode fs.FileMode = 0o644 // certificates and fingerprints (public)
)

// FileError reports a problem with one file: missing, insecure permissions,
// a symbolic link where none is allowed, or content that does not parse. It
// unwraps to its Class (decnet.ErrNotFound for a missing file,
// decnet.ErrInvalid otherwise, decnet.ErrConflict for a file that would be
// overwritten) and to the underlying error.
type FileError struct {
	Path    string // the file concerned
	Problem string // what is wrong, e.g. "is readable by group or others"
	Class   error  // a decnet error class
	Err     error  // the underlying error, may be nil
}

func (e *FileError) Error() string {
	if errors.Is(e.Class, decnet.ErrNotFound) {
		return "missing " + e.Path
	}
	msg := e.Path + ": " + e.Problem
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the class and the underlying error.
func (e *FileError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Class}
	}
	return []error{e.Class, e.Err}
}

func missing(path string, err error) *FileError {
	return &FileError{Path: path, Problem: "does not exist", Class: decnet.ErrNotFound, Err: err}
}

func invalidFile(path, problem string, err error) *FileError {
	return &FileError{Path: path, Problem: problem, Class: decnet.ErrInvalid, Err: err}
}

// ensureDir creates dir (and missing parents) with DirMode. An existing dir
// must be a real directory, not a symbolic link.
func ensureDir(dir string) error {
	fi, err := os.Lstat(dir)
	switch {
	case err == nil:
		if fi.Mode()&fs.ModeSymlink != 0 {
			return invalidFile(dir, "is a symbolic link; refusing to write through it", nil)
		}
		if !fi.IsDir() {
			return invalidFile(dir, "is not a directory", nil)
		}
		return nil
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, DirMode); err != nil {
			return fmt.Errorf("pki: create directory: %w", err)
		}
		return nil
	default:
		return fmt.Errorf("pki: stat directory: %w", err)
	}
}

// checkTarget refuses to replace a symbolic link, and, unless overwrite,
// any existing file.
func checkTarget(path string, overwrite bool) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("pki: stat: %w", err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return invalidFile(path, "is a symbolic link; refusing to write through it", nil)
	case !fi.Mode().IsRegular():
		return invalidFile(path, "is not a regular file", nil)
	case !overwrite:
		return &FileError{Path: path, Problem: "already exists; refusing to overwrite it", Class: decnet.ErrConflict}
	}
	return nil
}

// writeFileAtomic writes data to dir/name atomically with its final mode
// (see atomicfile.WriteFile).
func writeFileAtomic(dir, name string, data []byte, mode fs.FileMode) error {
	if err := atomicfile.WriteFile(dir, name, data, mode); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}

// readFile reads path. A missing file is a *FileError of class ErrNotFound.
// When secret, a file granting any permission to group or others is
// refused (checked on the opened file, so a symlink's target is checked).
func readFile(path string, secret bool) ([]byte, error) {
	data, _, err := readFileInfo(path, secret)
	return data, err
}

// readFileInfo is readFile that also returns the opened file's FileInfo.
func readFileInfo(path string, secret bool) ([]byte, fs.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, missing(path, err)
		}
		return nil, nil, fmt.Errorf("pki: open %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("pki: stat %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, invalidFile(path, "is not a regular file", nil)
	}
	if secret && fi.Mode().Perm()&0o077 != 0 {
		return nil, nil, invalidFile(path, fmt.Sprintf("private key has mode %#o: it must not be accessible by group or others (chmod 600)", fi.Mode().Perm()), nil)
	}
	const maxSize = 1 << 20
	data, err := io.ReadAll(io.LimitReader(f, maxSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("pki: read %s: %w", path, err)
	}
	if len(data) > maxSize {
		return nil, nil, invalidFile(path, "is larger than 1 MiB", nil)
	}
	return data, fi, nil
}
