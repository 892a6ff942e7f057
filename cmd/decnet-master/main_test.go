package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/pki"
	"github.com/decnet-swarm/sdk/internal/cli"
)

type result struct {
	code           int
	err            error
	stdout, stderr string
}

func run(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	err := Run(context.Background(), args, &out, &errb)
	return result{code: cli.ExitCode(err), err: err, stdout: out.String(), stderr: errb.String()}
}

func (r result) wantCode(t *testing.T, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d (err %v, stderr %q)", r.code, code, r.err, r.stderr)
	}
	if code != exitOK {
		if n := strings.Count(r.stderr, "\n"); n != 1 || !strings.HasPrefix(r.stderr, "decnet-master: ") {
			t.Fatalf("stderr %q: want one line starting with decnet-master:", r.stderr)
		}
	}
}

func perm(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// snapshot returns every file under root with its content.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(p)
			m[p] = string(b)
		}
		return nil
	})
	return m
}

func initPKI(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	run(t, "ca", "init", "--dir", dir, "--san", "192.0.2.1").wantCode(t, exitOK)
	return dir
}

func TestCAInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	r := run(t, "ca", "init", "--dir", dir, "--san", "192.0.2.1", "--san", "master.example")
	r.wantCode(t, exitOK)
	for p, want := range map[string]fs.FileMode{
		dir: 0o700, filepath.Join(dir, "ca"): 0o700, filepath.Join(dir, "master"): 0o700,
		filepath.Join(dir, "ca", pki.CAKeyFile): 0o600, filepath.Join(dir, "master", pki.KeyFile): 0o600,
	} {
		if got := perm(t, p); got != want {
			t.Errorf("%s: mode %#o, want %#o", p, got, want)
		}
	}
	ca, err := pki.LoadCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	master, err := pki.LoadBundle(filepath.Join(dir, "master"))
	if err != nil {
		t.Fatal(err)
	}
	if master.Name() != pki.MasterName || master.Role() != pki.RoleMaster || !master.CA.Equal(ca.Cert) {
		t.Fatalf("master identity %q %q", master.Name(), master.Role())
	}
	if err := master.Cert.CheckSignatureFrom(ca.Cert); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(master.Cert.DNSNames, "master.example") || !slices.ContainsFunc(master.Cert.IPAddresses, func(ip net.IP) bool { return ip.Equal(net.ParseIP("192.0.2.1")) }) {
		t.Errorf("master SANs %v %v", master.Cert.DNSNames, master.Cert.IPAddresses)
	}
	if !strings.Contains(r.stdout, master.Fingerprint()) || !strings.Contains(r.stdout, pki.Fingerprint(ca.Cert)) {
		t.Errorf("stdout %q lacks the fingerprints", r.stdout)
	}

	// A second init refuses and changes nothing.
	before := snapshot(t, dir)
	r = run(t, "ca", "init", "--dir", dir)
	r.wantCode(t, exitFailure)
	if !errors.Is(r.err, decnet.ErrConflict) {
		t.Errorf("second init: %v, want ErrConflict", r.err)
	}
	if after := snapshot(t, dir); !maps.Equal(before, after) {
		t.Fatal("refused init changed files")
	}
}

func TestCAInitRejections(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "pki")
	run(t, "ca", "init").wantCode(t, exitUsage)
	run(t, "ca", "init", "--dir", dir, "--san", "not a name").wantCode(t, exitUsage)
	run(t, "ca", "init", "--dir", dir, "extra").wantCode(t, exitUsage)
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("rejected init created the directory")
	}
}

func TestCAIssueWorker(t *testing.T) {
	dir := initPKI(t)
	out := filepath.Join(t.TempDir(), "bundles", "worker-1")
	r := run(t, "ca", "issue", "--dir", dir, "--role", "worker", "--name", "worker-1", "--san", "10.0.0.5", "--san", "worker-1.lan", "--out-dir", out)
	r.wantCode(t, exitOK)
	if perm(t, out) != 0o700 || perm(t, filepath.Join(out, pki.KeyFile)) != 0o600 {
		t.Fatalf("modes dir %#o key %#o", perm(t, out), perm(t, filepath.Join(out, pki.KeyFile)))
	}
	b, err := pki.LoadBundle(out)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(r.stdout) != b.Fingerprint() {
		t.Errorf("printed %q, want the fingerprint %s", r.stdout, b.Fingerprint())
	}
	if b.Name() != "worker-1" || b.Role() != pki.RoleWorker {
		t.Errorf("identity %q %q", b.Name(), b.Role())
	}
	if !slices.Equal(b.Cert.DNSNames, []string{"worker-1.lan", "worker-1"}) || len(b.Cert.IPAddresses) != 1 {
		t.Errorf("SANs %v %v", b.Cert.DNSNames, b.Cert.IPAddresses)
	}
	master, err := pki.LoadBundle(filepath.Join(dir, "master"))
	if err != nil {
		t.Fatal(err)
	}
	if b.MasterFingerprint != master.Fingerprint() {
		t.Errorf("worker bundle pins %q, want the master's %q", b.MasterFingerprint, master.Fingerprint())
	}
	if _, err := b.Cert.Verify(x509.VerifyOptions{Roots: master.CAPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("worker cert does not verify against the CA: %v", err)
	}

	// The fingerprint command agrees.
	r = run(t, "ca", "fingerprint", filepath.Join(out, pki.CertFile))
	r.wantCode(t, exitOK)
	if strings.TrimSpace(r.stdout) != b.Fingerprint() {
		t.Errorf("ca fingerprint printed %q", r.stdout)
	}

	// An existing bundle is not overwritten.
	before := snapshot(t, out)
	r = run(t, "ca", "issue", "--dir", dir, "--name", "worker-1", "--out-dir", out)
	r.wantCode(t, exitFailure)
	if !errors.Is(r.err, decnet.ErrConflict) || !maps.Equal(before, snapshot(t, out)) {
		t.Fatalf("overwrite: %v", r.err)
	}
}

// TestCAIssueWorkerWithoutMasterWarns: without DIR/master the worker bundle
// cannot pin the master; it is still issued, and the operator is told.
func TestCAIssueWorkerWithoutMasterWarns(t *testing.T) {
	dir := initPKI(t)
	masterCert := filepath.Join(dir, "master", pki.CertFile)
	if err := os.Remove(masterCert); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "w1")
	r := run(t, "ca", "issue", "--dir", dir, "--name", "w1", "--out-dir", out)
	r.wantCode(t, exitOK)
	b, err := pki.LoadBundle(out)
	if err != nil {
		t.Fatal(err)
	}
	if b.MasterFingerprint != "" {
		t.Fatalf("bundle pins %q without a master certificate", b.MasterFingerprint)
	}
	if strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, masterCert) {
		t.Fatalf("stderr %q: want one line naming %s", r.stderr, masterCert)
	}
}

func TestCAIssueOperator(t *testing.T) {
	dir := initPKI(t)
	out := filepath.Join(t.TempDir(), "alice")
	run(t, "ca", "issue", "--dir", dir, "--role", "operator", "--name", "alice", "--out-dir", out).wantCode(t, exitOK)
	b, err := pki.LoadBundle(out)
	if err != nil {
		t.Fatal(err)
	}
	if b.Role() != pki.RoleOperator || b.MasterFingerprint != "" {
		t.Fatalf("operator bundle: role %q pin %q", b.Role(), b.MasterFingerprint)
	}
}

func TestCAIssueRejections(t *testing.T) {
	dir := initPKI(t)
	root := t.TempDir()
	out := filepath.Join(root, "out")
	cases := map[string][]string{
		"reserved name":   {"--name", "decnet-master"},
		"reserved role":   {"--name", "decnet-operator"},
		"invalid name":    {"--name", "Worker_1"},
		"invalid SAN":     {"--name", "w1", "--san", "10.0.0.5", "--san", "no such host!"},
		"unknown role":    {"--name", "w1", "--role", "admin"},
		"no name":         {},
		"unknown flag":    {"--name", "w1", "--force"},
		"extra argument":  {"--name", "w1", "surplus"},
		"missing CA":      {"--name", "w1", "--dir", filepath.Join(root, "nope")},
		"flag w/o value":  {"--name"},
		"empty out-dir":   {"--name", "w1", "--out-dir", ""},
		"empty dir value": {"--name", "w1", "--dir", ""},
	}
	for name, extra := range cases {
		t.Run(name, func(t *testing.T) {
			args := append([]string{"ca", "issue", "--dir", dir, "--out-dir", out}, extra...)
			r := run(t, args...)
			r.wantCode(t, exitUsage)
			if _, err := os.Lstat(out); !errors.Is(err, fs.ErrNotExist) {
				t.Fatal("rejected issue created the output directory")
			}
			if r.stdout != "" {
				t.Errorf("stdout %q on rejection", r.stdout)
			}
		})
	}
	r := run(t, "ca", "issue", "--dir", dir, "--name", "decnet-master", "--out-dir", out)
	if !errors.Is(r.err, decnet.ErrInvalid) {
		t.Errorf("reserved name: %v, want ErrInvalid", r.err)
	}
	r = run(t, "ca", "issue", "--dir", filepath.Join(root, "nope"), "--name", "w1", "--out-dir", out)
	if !errors.Is(r.err, decnet.ErrNotFound) || !strings.Contains(r.stderr, filepath.Join(root, "nope", "ca", pki.CACertFile)) {
		t.Errorf("missing CA: %v / %q", r.err, r.stderr)
	}
}

func TestCAFingerprintRejections(t *testing.T) {
	root := t.TempDir()
	garbage := filepath.Join(root, "garbage.crt")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "ca", "fingerprint").wantCode(t, exitUsage)
	run(t, "ca", "fingerprint", garbage, garbage).wantCode(t, exitUsage)
	r := run(t, "ca", "fingerprint", garbage)
	r.wantCode(t, exitUsage)
	if !errors.Is(r.err, decnet.ErrInvalid) {
		t.Errorf("garbage: %v", r.err)
	}
	r = run(t, "ca", "fingerprint", filepath.Join(root, "absent.crt"))
	r.wantCode(t, exitUsage)
	if !errors.Is(r.err, decnet.ErrNotFound) {
		t.Errorf("absent: %v", r.err)
	}
}

func TestVersionAndUsage(t *testing.T) {
	r := run(t, "version")
	r.wantCode(t, exitOK)
	if !strings.HasPrefix(r.stdout, "decnet-master "+decnet.Version+" ") {
		t.Errorf("version printed %q", r.stdout)
	}
	run(t, "version", "x").wantCode(t, exitUsage)
	run(t, "bogus").wantCode(t, exitUsage)
	run(t, "ca", "bogus").wantCode(t, exitUsage)
	run(t, "--bogus").wantCode(t, exitUsage)
	r = run(t)
	r.wantCode(t, exitOK)
	if !strings.Contains(r.stdout, "ca") {
		t.Errorf("bare invocation printed %q", r.stdout)
	}
	r = run(t, "ca", "--help")
	r.wantCode(t, exitOK)
	if !strings.Contains(r.stdout, "issue") {
		t.Errorf("ca --help printed %q", r.stdout)
	}
}
