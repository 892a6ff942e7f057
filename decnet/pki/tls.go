package pki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
)

// ServerOptions configures ServerTLSConfig. The zero value is valid.
type ServerOptions struct {
	// Logger receives certificate reload events; nil discards them.
	Logger *slog.Logger
	// Time returns the current time used to verify client certificates and
	// reloaded server certificates; nil means time.Now.
	Time func() time.Time
}

// ServerTLSConfig returns the TLS configuration of an mTLS listener serving
// the identity in dir: TLS 1.3 minimum, a client certificate required and
// verified against the bundle's CA (with clientAuth usage). It does not
// authorize: call Authorize or AuthorizePinned in the handler, so that a
// CA-signed peer of the wrong role gets an HTTP 403.
//
// The server certificate is reloaded when CertFile or KeyFile change on
// disk (checked at each handshake by file identity, size and modification
// time). A new pair that does not load, does not match, is not signed by
// the bundle's CA or has expired is logged and the previous certificate
// keeps being served. The CA itself is read once.
func ServerTLSConfig(dir string, opts ServerOptions) (*tls.Config, error) {
	b, err := LoadBundle(dir)
	if err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &certReloader{
		certPath: filepath.Join(dir, CertFile),
		keyPath:  filepath.Join(dir, KeyFile),
		ca:       b.CA,
		logger:   logger,
		now:      opts.Time,
	}
	if err := r.init(); err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		ClientAuth:     tls.RequireAndVerifyClientCert,
		ClientCAs:      b.CAPool(),
		GetCertificate: r.getCertificate,
		Time:           opts.Time,
	}, nil
}

// certReloader serves the current certificate and swaps it when the files
// change.
type certReloader struct {
	certPath, keyPath string
	ca                *x509.Certificate
	logger            *slog.Logger
	now               func() time.Time

	mu        sync.Mutex
	cur       *tls.Certificate
	lastStamp stamp // the stamp last tried (good or bad)
}

type stamp struct{ cert, key fs.FileInfo }

func sameInfo(a, b fs.FileInfo) bool {
	return a != nil && b != nil && os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

func (s stamp) same(o stamp) bool { return sameInfo(s.cert, o.cert) && sameInfo(s.key, o.key) }

func (r *certReloader) init() error {
	cert, st, err := r.load()
	if err != nil {
		return err
	}
	r.cur, r.lastStamp = cert, st
	return nil
}

// load reads and checks the pair on disk; the stamp is taken from the
// opened files, so it describes exactly the content read.
func (r *certReloader) load() (*tls.Certificate, stamp, error) {
	leaf, key, st, err := loadPair(r.certPath, r.keyPath)
	if err != nil {
		return nil, st, err
	}
	if err := leaf.CheckSignatureFrom(r.ca); err != nil {
		return nil, st, invalidFile(r.certPath, "is not signed by the bundle's CA", err)
	}
	now := time.Now
	if r.now != nil {
		now = r.now
	}
	if now().After(leaf.NotAfter) {
		return nil, st, invalidFile(r.certPath, "has expired", nil)
	}
	return &tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}, st, nil
}

func (r *certReloader) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	ctx := context.Background()
	if hello != nil && hello.Context() != nil {
		ctx = hello.Context()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ci, err1 := os.Stat(r.certPath)
	ki, err2 := os.Stat(r.keyPath)
	if err1 != nil || err2 != nil {
		// Mid-replacement or removed: keep serving what we have.
		return r.cur, nil
	}
	now := stamp{cert: ci, key: ki}
	if now.same(r.lastStamp) {
		return r.cur, nil
	}
	cert, st, err := r.load()
	if st.cert != nil && st.key != nil {
		r.lastStamp = st
	} else {
		r.lastStamp = now
	}
	if err != nil {
		r.logger.WarnContext(ctx, "tls_certificate_reload_failed",
			"cert_path", r.certPath, "key_path", r.keyPath, "error", err.Error(),
			"serving_fingerprint", Fingerprint(r.cur.Leaf))
		return r.cur, nil
	}
	old := Fingerprint(r.cur.Leaf)
	r.cur = cert
	r.logger.InfoContext(ctx, "tls_certificate_reloaded",
		"cert_path", r.certPath, "old_fingerprint", old, "fingerprint", Fingerprint(cert.Leaf),
		"not_after", cert.Leaf.NotAfter)
	return r.cur, nil
}

// Peer is the verified identity on the other end of a connection.
type Peer struct {
	CN          string            // the certificate's common name
	Role        Role              // from the certificate's OU; "" when it has no valid role
	Fingerprint string            // canonical hex SHA-256 of the leaf
	Cert        *x509.Certificate // the leaf
}

// PeerFromConnectionState returns the client identity of a server-side
// connection whose certificate was verified in the handshake (as
// ServerTLSConfig requires). Without a verified certificate the error
// unwraps to decnet.ErrUnauthorized. It does not check the role.
func PeerFromConnectionState(cs *tls.ConnectionState) (Peer, error) {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return Peer{}, decnet.Errorf(decnet.ErrUnauthorized, "peer", "", "no verified client certificate")
	}
	leaf := cs.VerifiedChains[0][0]
	role, _ := RoleOf(leaf)
	return Peer{CN: leaf.Subject.CommonName, Role: role, Fingerprint: Fingerprint(leaf), Cert: leaf}, nil
}

// PeerFromRequest is PeerFromConnectionState(r.TLS).
func PeerFromRequest(r *http.Request) (Peer, error) { return PeerFromConnectionState(r.TLS) }

// Authorize returns the verified client identity of cs when its role is one
// of allowed. Otherwise the error unwraps to decnet.ErrUnauthorized (with no
// role allowed, every peer is refused); the returned Peer is still filled in
// when a verified certificate was presented, for logging.
func Authorize(cs *tls.ConnectionState, allowed ...Role) (Peer, error) {
	return AuthorizePinned(cs, "", allowed...)
}

// AuthorizePinned is Authorize plus, when fingerprint is not empty, a
// constant-time comparison of the peer's fingerprint with it; a mismatch
// (or an unparseable pin) is a *FingerprintMismatchError, which unwraps to
// decnet.ErrFingerprintMismatch.
func AuthorizePinned(cs *tls.ConnectionState, fingerprint string, allowed ...Role) (Peer, error) {
	p, err := PeerFromConnectionState(cs)
	if err != nil {
		return p, err
	}
	if err := checkRole(p, allowed...); err != nil {
		return p, err
	}
	if fingerprint != "" && !FingerprintEqual(fingerprint, p.Fingerprint) {
		return p, &FingerprintMismatchError{Want: fingerprint, Got: p.Fingerprint}
	}
	return p, nil
}

func checkRole(p Peer, allowed ...Role) error {
	if p.Role == "" {
		return decnet.Errorf(decnet.ErrUnauthorized, "peer", p.CN, "certificate of %q carries no valid role", p.CN)
	}
	for _, r := range allowed {
		if r == p.Role {
			return nil
		}
	}
	return decnet.Errorf(decnet.ErrUnauthorized, "peer", p.CN, "role %s of %q is not allowed", p.Role, p.CN)
}

// FingerprintMismatchError reports a CA-signed peer certificate whose
// fingerprint is not the pinned one. It unwraps to
// decnet.ErrFingerprintMismatch.
type FingerprintMismatchError struct {
	Want string // the pinned fingerprint, as configured
	Got  string // the peer's fingerprint
}

func (e *FingerprintMismatchError) Error() string {
	return fmt.Sprintf("peer certificate fingerprint %s does not match the pinned %s", e.Got, e.Want)
}

// Unwrap returns decnet.ErrFingerprintMismatch.
func (e *FingerprintMismatchError) Unwrap() error { return decnet.ErrFingerprintMismatch }

// ExpectPeer is what a client requires of the server it dials.
type ExpectPeer struct {
	// Fingerprint pins the server's leaf certificate (any form
	// ParseFingerprint accepts); empty means any certificate of Role signed
	// by the CA.
	Fingerprint string
	// Role is the server's required role (RoleWorker when the master dials
	// an agent, RoleMaster when an agent dials the master). Required.
	Role Role
	// Time returns the current time used to verify the server's
	// certificate; nil means time.Now.
	Time func() time.Time
}

// ClientTLSConfig returns the TLS configuration of a client presenting the
// bundle's identity: TLS 1.3 minimum, the bundle's certificate as client
// certificate, and, inside every handshake (VerifyConnection), the server's
// chain verified against the bundle's CA (serverAuth usage, no DNS-name
// check: workers are dialled by IP), its role checked and, when
// expect.Fingerprint is set, its fingerprint compared in constant time.
//
// A certificate from another CA, an expired one or one of the wrong role
// fails the handshake with an error unwrapping to decnet.ErrUnauthorized; a
// CA-signed certificate that is not the pinned one fails it with a
// *FingerprintMismatchError (decnet.ErrFingerprintMismatch). Both survive
// net/http's wrapping, so errors.Is works on the error of an http.Client
// call. An invalid expect is an error unwrapping to decnet.ErrInvalid.
func ClientTLSConfig(b *Bundle, expect ExpectPeer) (*tls.Config, error) {
	if err := b.check(); err != nil {
		return nil, err
	}
	if !expect.Role.Valid() {
		return nil, decnet.Errorf(decnet.ErrInvalid, "role", string(expect.Role), "expected peer role %q is not a role", expect.Role)
	}
	pin := ""
	if expect.Fingerprint != "" {
		var err error
		if pin, err = ParseFingerprint(expect.Fingerprint); err != nil {
			return nil, err
		}
	}
	roots := b.CAPool()
	now := expect.Time
	if now == nil {
		now = time.Now
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{b.TLSCertificate()},
		// The chain is verified by VerifyConnection below, without the
		// server-name check that does not fit peers dialled by IP.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyServer(cs, roots, now(), expect.Role, pin)
		},
		Time: expect.Time,
	}, nil
}

func verifyServer(cs tls.ConnectionState, roots *x509.CertPool, now time.Time, role Role, pin string) error {
	if len(cs.PeerCertificates) == 0 {
		return decnet.Errorf(decnet.ErrUnauthorized, "peer", "", "server presented no certificate")
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return fmt.Errorf("%w: server certificate %q: %w", decnet.ErrUnauthorized, leaf.Subject.CommonName, err)
	}
	p := Peer{CN: leaf.Subject.CommonName, Fingerprint: Fingerprint(leaf), Cert: leaf}
	p.Role, _ = RoleOf(leaf)
	if pin != "" && !FingerprintEqual(pin, p.Fingerprint) {
		return &FingerprintMismatchError{Want: pin, Got: p.Fingerprint}
	}
	return checkRole(p, role)
}
