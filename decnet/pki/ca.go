package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
)

// Validity periods and the clock-skew allowance applied to NotBefore.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	LeafValidity = 365 * 24 * time.Hour
	ClockSkew    = 5 * time.Minute
)

// CACommonName is the subject CN of every swarm CA.
const CACommonName = "DECNET Swarm CA"

// CA is a swarm certificate authority: its certificate and private key.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// Now returns the current time for validity periods; nil means time.Now.
	Now func() time.Time
}

func (ca *CA) now() time.Time {
	if ca.Now != nil {
		return ca.Now()
	}
	return time.Now()
}

// GenerateKey returns a new ECDSA P-256 private key.
func GenerateKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generate key: %w", err)
	}
	return k, nil
}

func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("pki: serial: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// NewCA creates a new CA: ECDSA P-256, CN "DECNET Swarm CA", path length 0,
// valid for CAValidity from now (minus ClockSkew). now may be nil (time.Now);
// it is kept as the CA's clock.
func NewCA(now func() time.Time) (*CA, error) {
	key, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	ca := &CA{Key: key, Now: now}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	t := ca.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: CACommonName},
		NotBefore:             t.Add(-ClockSkew),
		NotAfter:              t.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: create CA certificate: %w", err)
	}
	if ca.Cert, err = x509.ParseCertificate(der); err != nil {
		return nil, fmt.Errorf("pki: parse CA certificate: %w", err)
	}
	return ca, nil
}

// IssueRequest describes a leaf to issue.
type IssueRequest struct {
	Name string   // CN; see ValidName. Reserved names are refused for RoleWorker.
	Role Role     // the single OU
	SANs []string // IP addresses or DNS names; Name is always added as a DNS SAN
	// Validity overrides LeafValidity when positive. The leaf never outlives the CA.
	Validity time.Duration
}

// sanList is the parsed SAN set of a request.
type sanList struct {
	dns []string
	ips []net.IP
}

// validate checks req and returns its SANs. Every problem is listed in a
// *decnet.ValidationError.
func (req IssueRequest) validate() (sanList, error) {
	var v decnet.ValidationError
	var out sanList
	switch {
	case req.Name == "":
		v.Add("name", "is required")
	case !ValidName(req.Name):
		v.Add("name", "%q must be a lowercase DNS label: [a-z0-9-], 1-63 characters, not starting or ending with '-'", req.Name)
	case req.Role == RoleWorker && Reserved(req.Name):
		v.Add("name", "%q is reserved and cannot be issued to a worker", req.Name)
	}
	if !req.Role.Valid() {
		v.Add("role", "unknown role %q (want %s, %s or %s)", req.Role, RoleMaster, RoleWorker, RoleOperator)
	}
	if req.Validity < 0 {
		v.Add("validity", "must not be negative")
	}
	seenDNS := map[string]bool{}
	seenIP := map[netip.Addr]bool{}
	for i, s := range req.SANs {
		s = strings.TrimSpace(s)
		if a, err := netip.ParseAddr(s); err == nil {
			if a.Zone() != "" {
				v.Add(fmt.Sprintf("sans[%d]", i), "%q: IP addresses with a zone are not allowed", s)
				continue
			}
			a = a.Unmap()
			if !seenIP[a] {
				seenIP[a] = true
				out.ips = append(out.ips, net.IP(a.AsSlice()))
			}
			continue
		}
		name := strings.ToLower(strings.TrimSuffix(s, "."))
		if !decnet.ValidHostname(name) || numericLabel(name[strings.LastIndexByte(name, '.')+1:]) {
			v.Add(fmt.Sprintf("sans[%d]", i), "%q is neither an IP address nor a valid DNS name", s)
			continue
		}
		if !seenDNS[name] {
			seenDNS[name] = true
			out.dns = append(out.dns, name)
		}
	}
	if req.Name != "" && ValidName(req.Name) && !seenDNS[req.Name] {
		out.dns = append(out.dns, req.Name)
	}
	return out, v.Err()
}

// numericLabel reports whether a DNS label is all digits: as the last label
// of a name it is a mistyped IP address ("10.0.0"), not a host name.
func numericLabel(l string) bool {
	for i := 0; i < len(l); i++ {
		if l[i] < '0' || l[i] > '9' {
			return false
		}
	}
	return l != ""
}

// Validate checks the request without issuing anything. The error is a
// *decnet.ValidationError (unwraps to decnet.ErrInvalid).
func (req IssueRequest) Validate() error {
	_, err := req.validate()
	return err
}

// CreateCSR returns a PEM-encoded certificate signing request for name,
// signed by key.
func CreateCSR(key crypto.Signer, name string) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: name},
	}, key)
	if err != nil {
		return nil, fmt.Errorf("pki: create CSR: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// ParseCSR parses a PEM ("CERTIFICATE REQUEST") or DER certificate signing
// request and checks its signature. Errors unwrap to decnet.ErrInvalid.
func ParseCSR(data []byte) (*x509.CertificateRequest, error) {
	der := data
	if bytes.Contains(data, []byte("-----BEGIN")) {
		b, _ := pem.Decode(data)
		if b == nil || b.Type != "CERTIFICATE REQUEST" {
			return nil, decnet.Errorf(decnet.ErrInvalid, "csr", "", "CSR: no PEM CERTIFICATE REQUEST block")
		}
		der = b.Bytes
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: CSR: %w", decnet.ErrInvalid, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: CSR signature: %w", decnet.ErrInvalid, err)
	}
	return csr, nil
}

// Sign issues a leaf certificate for the public key of csr (PEM or DER),
// whose signature must be valid and whose key must be ECDSA P-256. The
// identity comes from req, never from the CSR: a CSR whose CN is set and
// differs from req.Name is refused. Errors unwrap to decnet.ErrInvalid.
func (ca *CA) Sign(csr []byte, req IssueRequest) (*x509.Certificate, error) {
	sans, err := req.validate()
	if err != nil {
		return nil, err
	}
	cr, err := ParseCSR(csr)
	if err != nil {
		return nil, err
	}
	if cn := cr.Subject.CommonName; cn != "" && cn != req.Name {
		return nil, decnet.Errorf(decnet.ErrInvalid, "csr", cn, "CSR common name %q does not match the issued name %q", cn, req.Name)
	}
	pub, ok := cr.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, decnet.Errorf(decnet.ErrInvalid, "csr", "", "CSR key must be ECDSA P-256")
	}
	return ca.issue(pub, req, sans)
}

func (ca *CA) issue(pub *ecdsa.PublicKey, req IssueRequest, sans sanList) (*x509.Certificate, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	validity := req.Validity
	if validity <= 0 {
		validity = LeafValidity
	}
	t := ca.now()
	notAfter := t.Add(validity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: req.Name, OrganizationalUnit: []string{string(req.Role)}},
		NotBefore:             t.Add(-ClockSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		DNSNames:              sans.dns,
		IPAddresses:           sans.ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("pki: create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parse certificate: %w", err)
	}
	return cert, nil
}

// NewBundle generates a key in-process and issues a leaf for it: the offline
// path (the CLI's "ca issue" and tests). Enrollment uses Sign, so that the
// private key never leaves its owner.
func (ca *CA) NewBundle(req IssueRequest) (*Bundle, error) {
	sans, err := req.validate()
	if err != nil {
		return nil, err
	}
	key, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	cert, err := ca.issue(&key.PublicKey, req, sans)
	if err != nil {
		return nil, err
	}
	return &Bundle{CA: ca.Cert, Cert: cert, Key: key}, nil
}

// RoleOf returns the role recorded in cert's OU. A certificate with no OU,
// several OUs or an unknown one has no role (ok is false).
func RoleOf(cert *x509.Certificate) (Role, bool) {
	if cert == nil || len(cert.Subject.OrganizationalUnit) != 1 {
		return "", false
	}
	r := Role(cert.Subject.OrganizationalUnit[0])
	return r, r.Valid()
}
