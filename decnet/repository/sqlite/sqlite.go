package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/repository"
	"github.com/decnet-swarm/sdk/decnet/repository/internal/sqldb"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// DefaultBusyTimeout is how long a connection waits for another process's
// lock before failing.
const DefaultBusyTimeout = 10 * time.Second

type core = sqldb.Store

// Store is a repository.Repository backed by one SQLite file. Its methods
// are documented on repository.Repository. Safe for concurrent use.
type Store struct {
	*core
}

var _ repository.Repository = (*Store)(nil)

type options struct {
	now         func() time.Time
	logger      *slog.Logger
	busyTimeout time.Duration
}

// Option configures Open.
type Option func(*options)

// WithClock sets the clock used for created, updated and enrolled times
// (default time.Now).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithLogger sets the logger that records applied schema migrations
// (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithBusyTimeout sets how long a connection waits for a lock held by
// another process (default DefaultBusyTimeout).
func WithBusyTimeout(d time.Duration) Option { return func(o *options) { o.busyTimeout = d } }

// Migrations returns how many schema migrations this binary embeds.
func Migrations() int { return sqldb.CountMigrations(migrationFS, "migrations") }

// Open opens (creating when absent) the SQLite database at path and migrates
// it to the current schema.
func Open(ctx context.Context, path string, opts ...Option) (*Store, error) {
	o := options{busyTimeout: DefaultBusyTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	if path == "" {
		return nil, decnet.Errorf(decnet.ErrInvalid, "database", "", "sqlite: database path is required")
	}
	ms, err := sqldb.LoadMigrations(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	// The file holds service settings (which may be secrets) and token
	// hashes: create it owner-only before SQLite does (SQLite gives its
	// -wal and -shm files the database file's mode).
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	f.Close()
	db, err := sql.Open("sqlite", dsn(path, o.busyTimeout))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	d := dialect()
	now := o.now
	if now == nil {
		now = time.Now
	}
	// Switching a new file to WAL and migrating it take locks for which
	// SQLite does not always run the busy handler, so a second process
	// opening the same new file at the same moment can see SQLITE_BUSY.
	// Retry those steps (both are idempotent) until the busy timeout.
	deadline := time.Now().Add(o.busyTimeout)
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		err = db.PingContext(ctx)
		if err == nil {
			err = sqldb.Migrate(ctx, db, d, ms, now, o.logger)
		}
		if err == nil || !isBusy(err) || time.Now().After(deadline) {
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			db.Close()
			return nil, fmt.Errorf("sqlite: open %s: %w", path, ctx.Err())
		case <-t.C:
		}
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return &Store{core: sqldb.New(db, d, sqldb.Config{Now: o.now})}, nil
}

// isBusy reports whether err is SQLite's "database is locked" (BUSY or LOCKED).
func isBusy(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	c := se.Code() & 0xff
	return c == sqlite3.SQLITE_BUSY || c == sqlite3.SQLITE_LOCKED
}

// BulkLoad inserts hosts and then deckies in one transaction, validating
// every record first as AddHost and CreateDecky do. Meant for imports and
// benchmarks; versions start at 1.
func (s *Store) BulkLoad(ctx context.Context, hosts []repository.Host, deckies []repository.Decky) error {
	return s.core.BulkLoad(ctx, hosts, deckies)
}

// dsn builds the connection string: every pooled connection gets the same
// pragmas, and BeginTx issues BEGIN IMMEDIATE so a write transaction takes
// the write lock up front (no deadlock-prone lock upgrade).
func dsn(path string, busy time.Duration) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	// A file: URI: SQLite decodes the escaped path, so a '?' or '#' in it
	// cannot be mistaken for the start of the parameters.
	return "file:" + strings.ReplaceAll(url.PathEscape(path), "%2F", "/") + "?" + q.Encode()
}

func dialect() *sqldb.Dialect {
	return &sqldb.Dialect{
		Name:            "sqlite",
		Classify:        classify,
		SerializeWrites: true,
	}
}

func classify(err error) sqldb.Kind {
	var se *sqlite.Error
	if err == nil || !errors.As(err, &se) {
		return sqldb.KindOther
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return sqldb.KindUnique
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return sqldb.KindForeignKey
	case sqlite3.SQLITE_CONSTRAINT_CHECK, sqlite3.SQLITE_CONSTRAINT_NOTNULL:
		return sqldb.KindCheck
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return sqldb.KindUnavailable
	}
	return sqldb.KindOther
}
