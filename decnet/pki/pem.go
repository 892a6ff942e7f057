package pki

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"

	"github.com/decnet-swarm/sdk/decnet"
)

// EncodeCertPEM returns cert as a PEM "CERTIFICATE" block.
func EncodeCertPEM(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
}

// EncodeKeyPEM returns key as a PEM "PRIVATE KEY" block (PKCS #8).
func EncodeKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseCertPEM returns the first certificate in PEM data. Errors unwrap to
// decnet.ErrInvalid.
func ParseCertPEM(data []byte) (*x509.Certificate, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, fmt.Errorf("%w: no PEM CERTIFICATE block", decnet.ErrInvalid)
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: certificate: %w", decnet.ErrInvalid, err)
		}
		return c, nil
	}
}

// ParseKeyPEM returns the private key in PEM data ("PRIVATE KEY" PKCS #8 or
// "EC PRIVATE KEY" SEC 1). Errors unwrap to decnet.ErrInvalid and never
// include key material.
func ParseKeyPEM(data []byte) (crypto.Signer, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, fmt.Errorf("%w: no PEM PRIVATE KEY block", decnet.ErrInvalid)
		}
		switch b.Type {
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%w: private key does not parse", decnet.ErrInvalid)
			}
			s, ok := k.(crypto.Signer)
			if !ok {
				return nil, fmt.Errorf("%w: private key type %T cannot sign", decnet.ErrInvalid, k)
			}
			return s, nil
		case "EC PRIVATE KEY":
			k, err := x509.ParseECPrivateKey(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%w: private key does not parse", decnet.ErrInvalid)
			}
			return k, nil
		}
	}
}
