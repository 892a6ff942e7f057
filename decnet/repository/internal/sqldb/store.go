package sqldb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/repository"
)

// Config configures a Store.
type Config struct {
	// Now is the clock for created/updated/enrolled times (nil: time.Now).
	Now func() time.Time
}

// Store implements repository.Repository over a *sql.DB.
type Store struct {
	db  *sql.DB
	d   *Dialect
	now func() time.Time
	wmu chan struct{} // one write transaction at a time, when the dialect asks
}

var _ repository.Repository = (*Store)(nil)

// New wraps an open, migrated db. The Store owns db: Close closes it.
func New(db *sql.DB, d *Dialect, cfg Config) *Store {
	s := &Store{db: db, d: d, now: cfg.Now}
	if s.now == nil {
		s.now = time.Now
	}
	if d.SerializeWrites {
		s.wmu = make(chan struct{}, 1)
	}
	return s
}

// DB returns the underlying database handle (for backend-specific tools
// such as bulk loaders; do not close it).
func (s *Store) DB() *sql.DB { return s.db }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// write runs fn in one write transaction.
func (s *Store) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if s.wmu != nil {
		select {
		case s.wmu <- struct{}{}:
		case <-ctx.Done():
			return fmt.Errorf("%s: wait for writer: %w: %w", s.d.Name, decnet.ErrUnavailable, ctx.Err())
		}
		defer func() { <-s.wmu }()
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.dbErr("begin", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return s.dbErr("commit", err)
	}
	return nil
}

// dbErr wraps an unexpected driver error; unreachable databases become
// decnet.ErrUnavailable.
func (s *Store) dbErr(op string, err error) error {
	if s.d.Classify(err) == KindUnavailable {
		return fmt.Errorf("%s: %s: %w: %w", s.d.Name, op, decnet.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %s: %w", s.d.Name, op, err)
}

func (s *Store) stamp() time.Time { return ts(s.now()) }

// ts normalises t to what the database stores: UTC, microseconds.
func ts(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

// micro encodes t; the zero time is NULL.
func micro(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

func unmicro(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMicro(v.Int64).UTC()
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func encodeJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Every value encoded here is built from strings, maps and slices.
		panic(fmt.Sprintf("sqldb: encode %T: %v", v, err))
	}
	return string(b)
}

// decodeJSON decodes a JSON column; an empty value or an empty list or map
// decodes to nil, so a round trip preserves "nothing" as nil.
func decodeJSON[T ~[]string | ~map[string]string](s string) (T, error) {
	var out T
	if s == "" {
		return nil, nil
	}
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return nil, fmt.Errorf("decode %T: %w", out, err)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

func decodeStrings(s string) ([]string, error)      { return decodeJSON[[]string](s) }
func decodeMap(s string) (map[string]string, error) { return decodeJSON[map[string]string](s) }

// queryAll runs query on s.db and scans every row with scan.
func queryAll[T any](ctx context.Context, s *Store, op, query string, scan func(scanner) (T, error), args ...any) ([]T, error) {
	rows, err := s.db.QueryContext(ctx, s.d.q(query), args...)
	if err != nil {
		return nil, s.dbErr(op, err)
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, s.dbErr(op, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, s.dbErr(op, err)
	}
	return out, nil
}

// nullStr encodes "" as NULL.
func nullStr(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func notFound(kind, id string) error {
	return decnet.Errorf(decnet.ErrNotFound, kind, id, "%s %q not found", kind, id)
}

func rowsAffected(r sql.Result) int64 {
	n, err := r.RowsAffected()
	if err != nil {
		return -1
	}
	return n
}

var errNoRows = sql.ErrNoRows

func isNoRows(err error) bool { return errors.Is(err, errNoRows) }
