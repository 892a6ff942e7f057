package pki_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/pki"
)

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestWriteBundleModesAndRoundTrip(t *testing.T) {
	ca := newCA(t, time.Time{})
	b := issue(t, ca, "worker-1", pki.RoleWorker, "10.0.0.5")
	b.MasterFingerprint = issue(t, ca, pki.MasterName, pki.RoleMaster).Fingerprint()
	dir := filepath.Join(t.TempDir(), "a", "agent")
	if err := pki.WriteBundle(dir, b); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, dir); m != 0o700 {
		t.Errorf("dir mode %#o, want 0700", m)
	}
	if m := mode(t, filepath.Dir(dir)); m != 0o700 {
		t.Errorf("parent dir mode %#o, want 0700", m)
	}
	if m := mode(t, filepath.Join(dir, pki.KeyFile)); m != 0o600 {
		t.Errorf("key mode %#o, want 0600", m)
	}
	for _, n := range []string{pki.CACertFile, pki.CertFile, pki.MasterFingerprintFile} {
		if m := mode(t, filepath.Join(dir, n)); m&0o077&^0o044 != 0 || m&0o600 != 0o600 {
			t.Errorf("%s mode %#o", n, m)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 4 {
		t.Errorf("dir holds %d entries, want 4 (no temporary files left)", len(entries))
	}
	got, err := pki.LoadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Fingerprint() != b.Fingerprint() || got.Role() != pki.RoleWorker || got.Name() != "worker-1" ||
		got.MasterFingerprint != b.MasterFingerprint || !got.CA.Equal(ca.Cert) {
		t.Fatalf("round trip mismatch: %+v", got)
	}

	// Renewal replaces the files in place; the key stays 0600.
	renewed := issue(t, ca, "worker-1", pki.RoleWorker)
	if err := pki.WriteBundle(dir, renewed); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, filepath.Join(dir, pki.KeyFile)); m != 0o600 {
		t.Errorf("renewed key mode %#o, want 0600", m)
	}
	if got, err := pki.LoadBundle(dir); err != nil || got.Fingerprint() != renewed.Fingerprint() {
		t.Fatalf("after renewal: %v", err)
	}
}

func TestLoadBundleMissingFile(t *testing.T) {
	ca := newCA(t, time.Time{})
	for _, name := range []string{pki.CACertFile, pki.CertFile, pki.KeyFile} {
		dir := writeBundle(t, issue(t, ca, "worker-1", pki.RoleWorker))
		path := filepath.Join(dir, name)
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		_, err := pki.LoadBundle(dir)
		var fe *pki.FileError
		if !errors.Is(err, decnet.ErrNotFound) || !errors.As(err, &fe) || fe.Path != path {
			t.Fatalf("without %s: %v, want a missing-file error naming it", name, err)
		}
		if err.Error() != "missing "+path {
			t.Errorf("message %q, want %q", err.Error(), "missing "+path)
		}
	}
}

func TestLoadRefusesInsecureKey(t *testing.T) {
	ca := newCA(t, time.Time{})
	for _, m := range []fs.FileMode{0o640, 0o604, 0o660, 0o644} {
		dir := writeBundle(t, issue(t, ca, "worker-1", pki.RoleWorker))
		key := filepath.Join(dir, pki.KeyFile)
		if err := os.Chmod(key, m); err != nil {
			t.Fatal(err)
		}
		_, err := pki.LoadBundle(dir)
		var fe *pki.FileError
		if !errors.Is(err, decnet.ErrInvalid) || !errors.As(err, &fe) || fe.Path != key {
			t.Errorf("mode %#o: %v, want ErrInvalid naming %s", m, err, key)
		}
		if _, err := pki.ServerTLSConfig(dir, pki.ServerOptions{}); !errors.Is(err, decnet.ErrInvalid) {
			t.Errorf("mode %#o: ServerTLSConfig %v, want ErrInvalid", m, err)
		}
	}
	caDir := filepath.Join(t.TempDir(), "ca")
	if err := pki.WriteCA(caDir, ca); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(caDir, pki.CAKeyFile), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.LoadCA(caDir); !errors.Is(err, decnet.ErrInvalid) {
		t.Errorf("group-readable CA key: %v, want ErrInvalid", err)
	}
}

func TestLoadBundleRejectsInconsistentFiles(t *testing.T) {
	ca := newCA(t, time.Time{})
	dir := writeBundle(t, issue(t, ca, "worker-1", pki.RoleWorker))
	other := issue(t, ca, "worker-2", pki.RoleWorker)
	if err := os.WriteFile(filepath.Join(dir, pki.CertFile), pki.EncodeCertPEM(other.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.LoadBundle(dir); !errors.Is(err, decnet.ErrInvalid) {
		t.Fatalf("cert/key mismatch: %v, want ErrInvalid", err)
	}
	if err := os.WriteFile(filepath.Join(dir, pki.CertFile), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.LoadBundle(dir); !errors.Is(err, decnet.ErrInvalid) {
		t.Fatalf("garbage cert: %v, want ErrInvalid", err)
	}
}

func TestWriteRefusesSymlinks(t *testing.T) {
	ca := newCA(t, time.Time{})
	b := issue(t, ca, "worker-1", pki.RoleWorker)
	root := t.TempDir()

	// A symlinked key file: the link target must stay untouched.
	dir := filepath.Join(root, "bundle")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(root, "elsewhere")
	if err := os.WriteFile(target, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, pki.KeyFile)); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteBundle(dir, b); !errors.Is(err, decnet.ErrInvalid) {
		t.Fatalf("symlinked key: %v, want ErrInvalid", err)
	}
	if data, _ := os.ReadFile(target); !bytes.Equal(data, []byte("precious")) {
		t.Fatal("symlink target was modified")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("rejected write left %d entries, want only the symlink", len(entries))
	}

	// A symlinked directory.
	real := filepath.Join(root, "real")
	if err := os.Mkdir(real, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(root, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteBundle(link, b); !errors.Is(err, decnet.ErrInvalid) {
		t.Fatalf("symlinked dir: %v, want ErrInvalid", err)
	}
	if entries, _ := os.ReadDir(real); len(entries) != 0 {
		t.Fatal("files written through a symlinked directory")
	}
}

func TestCADirectory(t *testing.T) {
	ca := newCA(t, time.Time{})
	dir := filepath.Join(t.TempDir(), "ca")
	if err := pki.WriteCA(dir, ca); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, dir); m != 0o700 {
		t.Errorf("CA dir mode %#o", m)
	}
	if m := mode(t, filepath.Join(dir, pki.CAKeyFile)); m != 0o600 {
		t.Errorf("CA key mode %#o", m)
	}
	before, _ := os.ReadFile(filepath.Join(dir, pki.CAKeyFile))
	if err := pki.WriteCA(dir, newCA(t, time.Time{})); !errors.Is(err, decnet.ErrConflict) {
		t.Fatalf("overwrite: %v, want ErrConflict", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, pki.CAKeyFile))
	if !bytes.Equal(before, after) {
		t.Fatal("refused overwrite changed the CA key")
	}
	loaded, err := pki.LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Cert.Equal(ca.Cert) {
		t.Fatal("loaded a different CA")
	}
	leaf := issue(t, loaded, "worker-1", pki.RoleWorker)
	if err := leaf.Cert.CheckSignatureFrom(ca.Cert); err != nil {
		t.Fatalf("leaf from the loaded CA: %v", err)
	}
	if _, err := pki.LoadCA(t.TempDir()); !errors.Is(err, decnet.ErrNotFound) {
		t.Fatalf("empty dir: %v, want ErrNotFound", err)
	}
}
