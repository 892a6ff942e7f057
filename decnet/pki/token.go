package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
)

// NewJoinToken returns a new one-time enrollment secret (32 random bytes,
// unpadded base64url) and the hash to store in place of it
// (HashJoinToken(secret)). Only the hash is ever persisted or logged.
func NewJoinToken() (secret, hash string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("pki: join token: %w", err)
	}
	secret = base64.RawURLEncoding.EncodeToString(b[:])
	return secret, HashJoinToken(secret), nil
}

// HashJoinToken returns the stored form of a join token: the lowercase hex
// SHA-256 of the secret's text.
func HashJoinToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// JoinTokenMatches reports, in constant time, whether secret hashes to the
// stored hash.
func JoinTokenMatches(secret, hash string) bool {
	return subtle.ConstantTimeCompare([]byte(HashJoinToken(secret)), []byte(hash)) == 1
}
