package pki

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/decnet-swarm/sdk/decnet"
)

// Fingerprint returns the certificate's fingerprint: the lowercase hex
// SHA-256 of its DER encoding (64 characters, no separators).
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// ParseFingerprint normalises an operator-supplied fingerprint and returns
// it in canonical form (64 lowercase hex digits). It accepts upper case,
// surrounding white space, an optional "sha256:" prefix, and the
// colon-separated form ("AB:CD:…", exactly 32 pairs). Anything else is an
// error that unwraps to decnet.ErrInvalid.
func ParseFingerprint(s string) (string, error) {
	v := strings.TrimSpace(s)
	if len(v) > 7 && strings.EqualFold(v[:7], "sha256:") {
		v = v[7:]
	}
	if strings.Contains(v, ":") {
		parts := strings.Split(v, ":")
		if len(parts) != sha256.Size {
			return "", errBadFingerprint
		}
		for _, p := range parts {
			if len(p) != 2 {
				return "", errBadFingerprint
			}
		}
		v = strings.Join(parts, "")
	}
	if len(v) != 2*sha256.Size {
		return "", errBadFingerprint
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return "", errBadFingerprint
		}
	}
	return strings.ToLower(v), nil
}

var errBadFingerprint = fmt.Errorf("%w: fingerprint must be 64 hex digits (SHA-256 of the certificate), optionally colon-separated", decnet.ErrInvalid)

// FingerprintEqual reports whether two fingerprints (in any form
// ParseFingerprint accepts) are equal, comparing in constant time. An
// unparseable fingerprint equals nothing.
func FingerprintEqual(a, b string) bool {
	ca, err1 := ParseFingerprint(a)
	cb, err2 := ParseFingerprint(b)
	if err1 != nil || err2 != nil {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(ca), []byte(cb)) == 1
}
