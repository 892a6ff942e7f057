// Package atomicfile replaces files so that a crash at any moment leaves
// either the old or the new content, never a mix: the one implementation the
// state file, the PKI bundles and the agent's compose file share.
package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// TempPrefix is the name prefix of the temporary files WriteFile creates for
// name (".<name>.tmp-"), so an owner can find and remove the leftovers of a
// writer that crashed mid-write.
func TempPrefix(name string) string { return "." + name + ".tmp-" }

// WriteFile atomically replaces dir/name with data. The temporary file is
// created in dir with O_EXCL and its final mode (never wider, never chmod'ed
// later), written, synced, renamed over the target, and then dir is synced
// so the rename itself survives a crash. On failure the temporary file is
// removed and the target is untouched.
func WriteFile(dir, name string, data []byte, mode fs.FileMode) (err error) {
	var suffix [8]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return fmt.Errorf("temporary name: %w", err)
	}
	path := filepath.Join(dir, name)
	tmp := filepath.Join(dir, TempPrefix(name)+hex.EncodeToString(suffix[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("create temporary file for %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return SyncDir(dir)
}

// SyncDir flushes dir's entries (a rename or an unlink in it) to disk.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
