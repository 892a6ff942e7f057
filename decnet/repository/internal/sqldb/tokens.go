package sqldb

import (
	"context"
	"database/sql"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/repository"
)

const tokenCols = `hash, name, created_at, expires_at, used_at`

func scanToken(r scanner) (repository.JoinToken, error) {
	var (
		t                      repository.JoinToken
		created, expires, used sql.NullInt64
	)
	err := r.Scan(&t.Hash, &t.Name, &created, &expires, &used)
	t.CreatedAt, t.ExpiresAt, t.UsedAt = unmicro(created), unmicro(expires), unmicro(used)
	return t, err
}

// CreateToken implements repository.Repository.
func (s *Store) CreateToken(ctx context.Context, t repository.JoinToken) error {
	v := &decnet.ValidationError{}
	if !sha256HexRE.MatchString(t.Hash) {
		v.Add("hash", "must be 64 lowercase hex digits (SHA-256 of the secret)")
	}
	switch {
	case t.Name == "":
		v.Add("name", "required")
	case !hostNameRE.MatchString(t.Name):
		v.Add("name", "%q is not a valid worker name", t.Name)
	}
	if t.ExpiresAt.IsZero() {
		v.Add("expires_at", "required")
	}
	if !t.UsedAt.IsZero() {
		v.Add("used_at", "a new token is unused")
	}
	if err := v.Err(); err != nil {
		return err
	}
	if t.CreatedAt.IsZero() {
		t.CreatedAt = s.stamp()
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.d.q(`INSERT INTO join_tokens (`+tokenCols+`) VALUES (?, ?, ?, ?, NULL)`),
			t.Hash, t.Name, micro(ts(t.CreatedAt)), micro(ts(t.ExpiresAt)))
		switch s.d.Classify(err) {
		case KindOther:
			if err != nil {
				return s.dbErr("create token", err)
			}
			return nil
		case KindUnique:
			return decnet.Errorf(decnet.ErrConflict, "token", "", "a join token with this hash already exists")
		default:
			return s.dbErr("create token", err)
		}
	})
}

// ConsumeToken implements repository.Repository. The token is claimed by a
// single conditional UPDATE, so of concurrent consumers exactly one wins.
func (s *Store) ConsumeToken(ctx context.Context, hash string, now time.Time) (repository.JoinToken, error) {
	if hash == "" {
		return repository.JoinToken{}, invalid("hash", "required")
	}
	if now.IsZero() {
		return repository.JoinToken{}, invalid("now", "required")
	}
	at := ts(now)
	var tok repository.JoinToken
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.d.q(`UPDATE join_tokens SET used_at = ?
WHERE hash = ? AND used_at IS NULL AND expires_at > ?`), micro(at), hash, micro(at))
		if err != nil {
			return s.dbErr("consume token", err)
		}
		won := rowsAffected(res) == 1
		tok, err = scanToken(tx.QueryRowContext(ctx, s.d.q(`SELECT `+tokenCols+` FROM join_tokens WHERE hash = ?`), hash))
		switch {
		case isNoRows(err):
			return decnet.Errorf(decnet.ErrNotFound, "token", "", "unknown join token")
		case err != nil:
			return s.dbErr("consume token", err)
		case won:
			return nil
		case !tok.UsedAt.IsZero():
			return decnet.Errorf(decnet.ErrConflict, "token", "", "join token for %q was already used", tok.Name)
		default:
			return decnet.Errorf(decnet.ErrUnauthorized, "token", "", "join token for %q has expired", tok.Name)
		}
	})
	if err != nil {
		return repository.JoinToken{}, err
	}
	return tok, nil
}

func (s *Store) deny(ctx context.Context, q querier, d repository.DeniedFingerprint) error {
	_, err := q.ExecContext(ctx, s.d.q(`INSERT INTO denied_fingerprints (fingerprint, host_name, reason, denied_at)
VALUES (?, ?, ?, ?) ON CONFLICT (fingerprint) DO NOTHING`), d.Fingerprint, d.HostName, truncText(d.Reason), micro(d.DeniedAt))
	if err != nil {
		return s.dbErr("deny fingerprint", err)
	}
	return nil
}

// DenyFingerprint implements repository.Repository. Denying a fingerprint
// that is already denied keeps the first record and succeeds.
func (s *Store) DenyFingerprint(ctx context.Context, d repository.DeniedFingerprint) error {
	if !sha256HexRE.MatchString(d.Fingerprint) {
		return invalid("fingerprint", "must be 64 lowercase hex digits (SHA-256)")
	}
	d.DeniedAt = ts(d.DeniedAt)
	if d.DeniedAt.IsZero() {
		d.DeniedAt = s.stamp()
	}
	return s.write(ctx, func(tx *sql.Tx) error { return s.deny(ctx, tx, d) })
}

// IsDenied implements repository.Repository.
func (s *Store) IsDenied(ctx context.Context, fingerprint string) (bool, error) {
	if fingerprint == "" {
		return false, invalid("fingerprint", "required")
	}
	var n int
	if err := s.db.QueryRowContext(ctx, s.d.q(`SELECT COUNT(*) FROM denied_fingerprints WHERE fingerprint = ?`), fingerprint).Scan(&n); err != nil {
		return false, s.dbErr("is denied", err)
	}
	return n > 0, nil
}
