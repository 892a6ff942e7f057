// Package decnet holds the domain model of a decnet deception network: the
// fleet [Config], its [Network], the decoy machines ([Decky]), the service
// [Catalog], the OS fingerprint profiles, validation, and the error classes
// every other package wraps.
//
// The package is pure: it performs no I/O beyond encoding and decoding values
// and it imports no other decnet package, no database driver and no Docker
// client. Everything else in the SDK builds on it.
//
// # Errors
//
// Errors are classified by a small set of sentinels ([ErrNotFound],
// [ErrInvalid], [ErrConflict], [ErrUnauthorized], [ErrUnavailable],
// [ErrFingerprintMismatch], [ErrApplyFailed]). Typed errors such as [*Error]
// and [*ValidationError] unwrap to a class, so callers test them with
// [errors.Is] and never by message text. On the wire an error travels as
// [WireError], whose code maps back to the same class.
package decnet
