// Package pki is the swarm's public-key infrastructure: the certificate
// authority, leaf issuance from certificate signing requests, identity
// bundles on disk, certificate fingerprints, and the *tls.Config builders
// every mTLS listener and client in decnet uses.
//
// # Identities
//
// Every identity is an ECDSA P-256 leaf certificate signed by the swarm CA
// (ECDSA P-256, 10 years, CN "DECNET Swarm CA", path length 0). A leaf is
// valid for one year, carries both serverAuth and clientAuth, has CN=<name>
// and exactly one OU naming its [Role] ([RoleMaster], [RoleWorker],
// [RoleOperator]), and lists its SANs (IP or DNS) plus its name. Leaves are
// issued from CSRs ([CA.Sign]) so a private key never leaves its owner;
// [CA.NewBundle] is the offline shortcut that generates the key in-process.
//
// # Files
//
// An identity lives in a directory (a [Bundle]): ca.crt, tls.crt, tls.key
// and, for worker bundles that pin their master, master.fingerprint. The CA
// lives in its own directory: ca.crt and ca.key. Directories are created
// 0700 and key files are created 0600 (opened with that mode, written to a
// temporary file in the same directory, synced and renamed); a key file that
// grants any permission to group or others is refused on load, and nothing is
// ever written through a symbolic link. Problems with one file are reported
// as a [*FileError] naming the path.
//
// # TLS
//
// [ServerTLSConfig] requires TLS 1.3 and a client certificate signed by the
// bundle's CA, and reloads its own certificate when the files change on disk.
// Authorization by role and pinned fingerprint happens after the handshake,
// in the HTTP handler, with [Authorize] / [AuthorizePinned], so that a
// CA-signed certificate of the wrong role gets a 403 rather than a failed
// handshake. [ClientTLSConfig] verifies the server's chain, role and
// (optionally) pinned fingerprint inside every handshake, without depending
// on DNS names, because workers are dialled by IP address.
//
// Errors unwrap to the decnet classes: a certificate from another CA or of
// the wrong role is [decnet.ErrUnauthorized], a CA-signed certificate whose
// fingerprint is not the pinned one is [decnet.ErrFingerprintMismatch], bad
// input is [decnet.ErrInvalid], a missing file is [decnet.ErrNotFound].
package pki
