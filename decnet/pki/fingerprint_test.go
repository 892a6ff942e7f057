package pki_test

import (
	"encoding/pem"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/pki"
)

func pemDecode(data []byte) ([]byte, bool) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, false
	}
	return b.Bytes, true
}

const canon = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func colonForm(s string) string {
	parts := make([]string, 0, len(s)/2)
	for i := 0; i < len(s); i += 2 {
		parts = append(parts, s[i:i+2])
	}
	return strings.Join(parts, ":")
}

func TestFingerprint(t *testing.T) {
	b := issue(t, newCA(t, time.Time{}), "w", pki.RoleWorker)
	fp := pki.Fingerprint(b.Cert)
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(fp) {
		t.Fatalf("fingerprint %q is not 64 lowercase hex digits", fp)
	}
	// openssl x509 -fingerprint -sha256 prints the colon form in upper case.
	if got, err := pki.ParseFingerprint("SHA256:" + strings.ToUpper(colonForm(fp))); err != nil || got != fp {
		t.Fatalf("ParseFingerprint(openssl form) = %q, %v", got, err)
	}
}

func TestParseFingerprint(t *testing.T) {
	good := []string{canon, strings.ToUpper(canon), "  " + canon + "\n", colonForm(canon), strings.ToUpper(colonForm(canon)), "sha256:" + canon}
	for _, in := range good {
		if got, err := pki.ParseFingerprint(in); err != nil || got != canon {
			t.Errorf("ParseFingerprint(%q) = %q, %v", in, got, err)
		}
	}
	bad := []string{"", canon[:63], canon + "0", strings.Replace(canon, "0", "g", 1), canon[:62] + ":f", colonForm(canon) + ":", ":" + colonForm(canon),
		strings.Replace(colonForm(canon), ":", "", 1) + ":", "sha256:", strings.Replace(colonForm(canon), "01:", "0:1", 1), "sha1:" + canon}
	for _, in := range bad {
		if _, err := pki.ParseFingerprint(in); !errors.Is(err, decnet.ErrInvalid) {
			t.Errorf("ParseFingerprint(%q) = %v, want ErrInvalid", in, err)
		}
	}
	if !pki.FingerprintEqual(canon, colonForm(strings.ToUpper(canon))) || pki.FingerprintEqual(canon, strings.Replace(canon, "0", "1", 1)) || pki.FingerprintEqual("x", "x") {
		t.Error("FingerprintEqual")
	}
}

var canonRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

func FuzzParseFingerprint(f *testing.F) {
	f.Add(canon)
	f.Add(colonForm(strings.ToUpper(canon)))
	f.Add("sha256:" + canon)
	f.Add("")
	f.Add("::::")
	f.Fuzz(func(t *testing.T, in string) {
		got, err := pki.ParseFingerprint(in)
		if err != nil {
			if !errors.Is(err, decnet.ErrInvalid) {
				t.Fatalf("error %v does not unwrap to ErrInvalid", err)
			}
			return
		}
		if !canonRE.MatchString(got) {
			t.Fatalf("ParseFingerprint(%q) = %q: not canonical", in, got)
		}
		again, err := pki.ParseFingerprint(got)
		if err != nil || again != got {
			t.Fatalf("canonical form %q does not round-trip: %q, %v", got, again, err)
		}
		// Every accepted input carries exactly the canonical digits.
		digits := strings.ToLower(strings.NewReplacer(":", "").Replace(strings.TrimSpace(in)))
		if !strings.HasSuffix(digits, got) {
			t.Fatalf("ParseFingerprint(%q) = %q: digits not taken from the input", in, got)
		}
	})
}

func TestJoinToken(t *testing.T) {
	secret, hash, err := pki.NewJoinToken()
	if err != nil {
		t.Fatal(err)
	}
	if len(secret) != 43 || !regexp.MustCompile(`^[A-Za-z0-9_-]+$`).MatchString(secret) {
		t.Errorf("secret %q is not 32 bytes of unpadded base64url", secret)
	}
	if hash != pki.HashJoinToken(secret) || !canonRE.MatchString(hash) || strings.Contains(hash, secret) {
		t.Errorf("hash %q", hash)
	}
	if !pki.JoinTokenMatches(secret, hash) || pki.JoinTokenMatches(secret+"x", hash) || pki.JoinTokenMatches(secret, "") {
		t.Error("JoinTokenMatches")
	}
	s2, _, _ := pki.NewJoinToken()
	if s2 == secret {
		t.Error("two tokens are equal")
	}
}
