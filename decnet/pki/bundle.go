package pki

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/decnet-swarm/sdk/decnet"
)

// Bundle is an identity: its certificate and private key, and the CA that
// signed it. On disk it is a directory holding CACertFile, CertFile, KeyFile
// and optionally MasterFingerprintFile.
type Bundle struct {
	CA   *x509.Certificate
	Cert *x509.Certificate
	Key  crypto.Signer
	// MasterFingerprint optionally pins the master's certificate (canonical
	// hex); set in worker bundles so the agent accepts only that master.
	MasterFingerprint string
}

// Fingerprint returns the fingerprint of the bundle's own certificate.
func (b *Bundle) Fingerprint() string { return Fingerprint(b.Cert) }

// Role returns the role of the bundle's certificate ("" when it has none).
func (b *Bundle) Role() Role {
	r, _ := RoleOf(b.Cert)
	return r
}

// Name returns the CN of the bundle's certificate.
func (b *Bundle) Name() string { return b.Cert.Subject.CommonName }

// TLSCertificate returns the certificate and key for a tls.Config.
func (b *Bundle) TLSCertificate() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{b.Cert.Raw}, PrivateKey: b.Key, Leaf: b.Cert}
}

// CAPool returns a pool holding only the bundle's CA.
func (b *Bundle) CAPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(b.CA)
	return p
}

// check verifies the bundle's internal consistency: the key matches the
// certificate and the certificate is signed by the CA.
func (b *Bundle) check() error {
	if b == nil || b.CA == nil || b.Cert == nil || b.Key == nil {
		return fmt.Errorf("%w: incomplete bundle", decnet.ErrInvalid)
	}
	if !publicKeysEqual(b.Key.Public(), b.Cert.PublicKey) {
		return fmt.Errorf("%w: private key does not match the certificate", decnet.ErrInvalid)
	}
	if err := b.Cert.CheckSignatureFrom(b.CA); err != nil {
		return fmt.Errorf("%w: certificate is not signed by the bundle's CA: %w", decnet.ErrInvalid, err)
	}
	if b.MasterFingerprint != "" {
		if _, err := ParseFingerprint(b.MasterFingerprint); err != nil {
			return err
		}
	}
	return nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

// WriteBundle writes b to dir, creating dir with DirMode when missing. The
// key is created KeyMode; each file is written atomically (temporary file,
// fsync, rename), so a reader or a hot-reloading server sees either the old
// or the new file. Existing bundle files are replaced (certificate renewal);
// symbolic links are never written through. The key is written before the
// certificate.
func WriteBundle(dir string, b *Bundle) error {
	if err := b.check(); err != nil {
		return err
	}
	keyPEM, err := EncodeKeyPEM(b.Key)
	if err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
		mode fs.FileMode
	}{
		{CACertFile, EncodeCertPEM(b.CA), CertMode},
		{KeyFile, keyPEM, KeyMode},
		{CertFile, EncodeCertPEM(b.Cert), CertMode},
	}
	if b.MasterFingerprint != "" {
		fp, _ := ParseFingerprint(b.MasterFingerprint)
		files = append(files, struct {
			name string
			data []byte
			mode fs.FileMode
		}{MasterFingerprintFile, []byte(fp + "\n"), CertMode})
	}
	if err := ensureDir(dir); err != nil {
		return err
	}
	for _, f := range files {
		if err := checkTarget(filepath.Join(dir, f.name), true); err != nil {
			return err
		}
	}
	for _, f := range files {
		if err := writeFileAtomic(dir, f.name, f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// BundleExists reports whether dir holds any bundle file (so a writer that
// must not overwrite an identity can refuse).
func BundleExists(dir string) bool {
	for _, n := range []string{CACertFile, CertFile, KeyFile} {
		if _, err := os.Lstat(filepath.Join(dir, n)); err == nil {
			return true
		}
	}
	return false
}

// LoadBundle reads the bundle in dir. A missing file is a *FileError that
// unwraps to decnet.ErrNotFound and whose message is "missing <path>"; a key
// file accessible by group or others, or content that does not parse or
// does not belong together, is a *FileError / error unwrapping to
// decnet.ErrInvalid. Expiry is not checked here (the TLS handshake does).
func LoadBundle(dir string) (*Bundle, error) {
	caPath := filepath.Join(dir, CACertFile)
	caPEM, err := readFile(caPath, false)
	if err != nil {
		return nil, err
	}
	b := &Bundle{}
	if b.CA, err = ParseCertPEM(caPEM); err != nil {
		return nil, invalidFile(caPath, "not a PEM certificate", err)
	}
	if b.Cert, b.Key, _, err = loadPair(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)); err != nil {
		return nil, err
	}
	fpPath := filepath.Join(dir, MasterFingerprintFile)
	switch data, err := readFile(fpPath, false); {
	case err == nil:
		fp, perr := ParseFingerprint(strings.TrimSpace(string(data)))
		if perr != nil {
			return nil, invalidFile(fpPath, "not a fingerprint", perr)
		}
		b.MasterFingerprint = fp
	case !errors.Is(err, decnet.ErrNotFound):
		return nil, err
	}
	if err := b.check(); err != nil {
		return nil, invalidFile(dir, "inconsistent bundle", err)
	}
	return b, nil
}

// WriteCA writes ca to dir (CACertFile, CAKeyFile), creating dir with
// DirMode. It refuses (decnet.ErrConflict) to overwrite an existing CA
// file and writes nothing in that case.
func WriteCA(dir string, ca *CA) error {
	if ca == nil || ca.Cert == nil || ca.Key == nil {
		return fmt.Errorf("%w: incomplete CA", decnet.ErrInvalid)
	}
	keyPEM, err := EncodeKeyPEM(ca.Key)
	if err != nil {
		return err
	}
	if err := ensureDir(dir); err != nil {
		return err
	}
	for _, n := range []string{CAKeyFile, CACertFile} {
		if err := checkTarget(filepath.Join(dir, n), false); err != nil {
			return err
		}
	}
	if err := writeFileAtomic(dir, CAKeyFile, keyPEM, KeyMode); err != nil {
		return err
	}
	return writeFileAtomic(dir, CACertFile, EncodeCertPEM(ca.Cert), CertMode)
}

// LoadCA reads the CA in dir. Errors are as for LoadBundle. The returned
// CA's Now is nil (time.Now).
func LoadCA(dir string) (*CA, error) {
	certPath := filepath.Join(dir, CACertFile)
	ca := &CA{}
	var err error
	if ca.Cert, ca.Key, _, err = loadPair(certPath, filepath.Join(dir, CAKeyFile)); err != nil {
		return nil, err
	}
	if !ca.Cert.IsCA {
		return nil, invalidFile(certPath, "is not a CA certificate", nil)
	}
	return ca, nil
}

// LoadCertFile reads the first certificate of a PEM file.
func LoadCertFile(path string) (*x509.Certificate, error) {
	data, err := readFile(path, false)
	if err != nil {
		return nil, err
	}
	c, err := ParseCertPEM(data)
	if err != nil {
		return nil, invalidFile(path, "not a PEM certificate", err)
	}
	return c, nil
}

// loadPair reads a PEM certificate and its PEM private key (refusing a key
// file accessible by group or others) and checks that they match. The
// stamp describes the files exactly as read.
func loadPair(certPath, keyPath string) (*x509.Certificate, crypto.Signer, stamp, error) {
	var st stamp
	certPEM, ci, err := readFileInfo(certPath, false)
	if err != nil {
		return nil, nil, st, err
	}
	keyPEM, ki, err := readFileInfo(keyPath, true)
	if err != nil {
		return nil, nil, st, err
	}
	st = stamp{cert: ci, key: ki}
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		return nil, nil, st, invalidFile(certPath, "not a PEM certificate", err)
	}
	key, err := ParseKeyPEM(keyPEM)
	if err != nil {
		return nil, nil, st, invalidFile(keyPath, "not a PEM private key", err)
	}
	if !publicKeysEqual(key.Public(), cert.PublicKey) {
		return nil, nil, st, invalidFile(keyPath, "does not match "+certPath, nil)
	}
	return cert, key, st, nil
}
