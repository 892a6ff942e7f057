package pki_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/pki"
)

func TestCACertificate(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	ca := newCA(t, at)
	c := ca.Cert
	if c.Subject.CommonName != pki.CACommonName || !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Fatalf("CA fields: cn=%q isCA=%v maxPath=%d zero=%v", c.Subject.CommonName, c.IsCA, c.MaxPathLen, c.MaxPathLenZero)
	}
	if c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Error("CA lacks keyCertSign")
	}
	if pub, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("CA key %T, want ECDSA P-256", c.PublicKey)
	}
	if !c.NotBefore.Equal(at.Add(-pki.ClockSkew)) || !c.NotAfter.Equal(at.Add(pki.CAValidity)) {
		t.Errorf("CA validity %v – %v", c.NotBefore, c.NotAfter)
	}
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %v", c.SerialNumber)
	}
}

func TestLeafFromCSR(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	ca := newCA(t, at)
	key, err := pki.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.CreateCSR(key, "worker-1")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Sign(csr, pki.IssueRequest{Name: "worker-1", Role: pki.RoleWorker,
		SANs: []string{"10.0.0.5", "::1", "Worker-1.LAN.", "10.0.0.5", "worker-1"}})
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "worker-1" || !slices.Equal(cert.Subject.OrganizationalUnit, []string{"decnet-worker"}) {
		t.Errorf("subject %v", cert.Subject)
	}
	if r, ok := pki.RoleOf(cert); !ok || r != pki.RoleWorker {
		t.Errorf("RoleOf = %q %v", r, ok)
	}
	if !slices.Equal(cert.DNSNames, []string{"worker-1.lan", "worker-1"}) {
		t.Errorf("DNS SANs %v", cert.DNSNames)
	}
	if len(cert.IPAddresses) != 2 || !cert.IPAddresses[0].Equal(net.ParseIP("10.0.0.5")) || !cert.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("IP SANs %v", cert.IPAddresses)
	}
	if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Errorf("EKU %v", cert.ExtKeyUsage)
	}
	if cert.IsCA {
		t.Error("leaf is a CA")
	}
	if !cert.NotAfter.Equal(at.Add(pki.LeafValidity)) || !cert.NotBefore.Equal(at.Add(-pki.ClockSkew)) {
		t.Errorf("leaf validity %v – %v", cert.NotBefore, cert.NotAfter)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		t.Error("leaf is not for the CSR's key")
	}
	if err := cert.CheckSignatureFrom(ca.Cert); err != nil {
		t.Error(err)
	}
	if cert.SerialNumber.BitLen() > 128 || cert.SerialNumber.Sign() <= 0 {
		t.Errorf("serial %v", cert.SerialNumber)
	}
}

func TestSignRejectsBadCSRs(t *testing.T) {
	ca := newCA(t, time.Time{})
	req := pki.IssueRequest{Name: "worker-1", Role: pki.RoleWorker}
	key, _ := pki.GenerateKey()

	good, _ := pki.CreateCSR(key, "worker-1")
	block, _ := pemDecode(good)
	tampered := slices.Clone(block)
	tampered[len(tampered)-3] ^= 0xff // inside the signature
	if _, err := ca.Sign(tampered, req); !errors.Is(err, decnet.ErrInvalid) {
		t.Errorf("tampered CSR: %v, want ErrInvalid", err)
	}

	other, _ := pki.CreateCSR(key, "worker-2")
	if _, err := ca.Sign(other, req); !errors.Is(err, decnet.ErrInvalid) {
		t.Errorf("CSR for another name: %v, want ErrInvalid", err)
	}

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaCSR, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "worker-1"}}, rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Sign(rsaCSR, req); !errors.Is(err, decnet.ErrInvalid) {
		t.Errorf("RSA CSR: %v, want ErrInvalid", err)
	}
	if _, err := ca.Sign([]byte("not a csr"), req); !errors.Is(err, decnet.ErrInvalid) {
		t.Errorf("garbage CSR: %v, want ErrInvalid", err)
	}
	// DER is accepted too.
	if _, err := ca.Sign(block, req); err != nil {
		t.Errorf("DER CSR: %v", err)
	}
}

func TestIssueRequestValidation(t *testing.T) {
	ca := newCA(t, time.Time{})
	bad := []pki.IssueRequest{
		{Name: "decnet-master", Role: pki.RoleWorker},
		{Name: "decnet-worker", Role: pki.RoleWorker},
		{Name: "decnet-operator", Role: pki.RoleWorker},
		{Name: "localhost", Role: pki.RoleWorker},
		{Name: "", Role: pki.RoleWorker},
		{Name: "Worker", Role: pki.RoleWorker},
		{Name: "-w", Role: pki.RoleWorker},
		{Name: "w-", Role: pki.RoleWorker},
		{Name: "w_1", Role: pki.RoleWorker},
		{Name: "a234567890123456789012345678901234567890123456789012345678901234", Role: pki.RoleWorker},
		{Name: "worker-1", Role: "decnet-admin"},
		{Name: "worker-1", Role: ""},
		{Name: "worker-1", Role: pki.RoleWorker, SANs: []string{"bad name!"}},
		{Name: "worker-1", Role: pki.RoleWorker, SANs: []string{"fe80::1%eth0"}},
		{Name: "worker-1", Role: pki.RoleWorker, SANs: []string{""}},
		{Name: "worker-1", Role: pki.RoleWorker, SANs: []string{"*.example.com"}},
		{Name: "worker-1", Role: pki.RoleWorker, SANs: []string{"10.0.0"}},
		{Name: "worker-1", Role: pki.RoleWorker, SANs: []string{"256.1.1.1"}},
		{Name: "worker-1", Role: pki.RoleWorker, SANs: []string{"10.0.0.1/24"}},
	}
	key, _ := pki.GenerateKey()
	for _, req := range bad {
		if _, err := ca.NewBundle(req); !errors.Is(err, decnet.ErrInvalid) {
			t.Errorf("NewBundle(%+v) = %v, want ErrInvalid", req, err)
		}
		csr, _ := pki.CreateCSR(key, "")
		if _, err := ca.Sign(csr, req); !errors.Is(err, decnet.ErrInvalid) {
			t.Errorf("Sign(%+v) = %v, want ErrInvalid", req, err)
		}
		var ve *decnet.ValidationError
		if err := req.Validate(); !errors.As(err, &ve) || len(ve.Problems) == 0 {
			t.Errorf("Validate(%+v) = %v, want a ValidationError", req, err)
		}
	}
	// The master's own identity uses the reserved name with the master role.
	if _, err := ca.NewBundle(pki.IssueRequest{Name: pki.MasterName, Role: pki.RoleMaster}); err != nil {
		t.Errorf("master identity: %v", err)
	}
	if _, err := ca.NewBundle(pki.IssueRequest{Name: "alice", Role: pki.RoleOperator}); err != nil {
		t.Errorf("operator identity: %v", err)
	}
}

func TestParseRole(t *testing.T) {
	for in, want := range map[string]pki.Role{"worker": pki.RoleWorker, "decnet-master": pki.RoleMaster, " Operator ": pki.RoleOperator} {
		if got, err := pki.ParseRole(in); err != nil || got != want {
			t.Errorf("ParseRole(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "admin", "decnet-", "decnet-decnet-worker"} {
		if _, err := pki.ParseRole(in); !errors.Is(err, decnet.ErrInvalid) {
			t.Errorf("ParseRole(%q) = %v, want ErrInvalid", in, err)
		}
	}
}

func TestLeafNeverOutlivesCA(t *testing.T) {
	ca := newCA(t, time.Time{})
	b, err := ca.NewBundle(pki.IssueRequest{Name: "w", Role: pki.RoleWorker, Validity: 20 * 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if b.Cert.NotAfter.After(ca.Cert.NotAfter) {
		t.Fatalf("leaf expires %v after the CA %v", b.Cert.NotAfter, ca.Cert.NotAfter)
	}
}
