package postgres

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/repository"
	"github.com/decnet-swarm/sdk/decnet/repository/internal/sqldb"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// DefaultMaxConns bounds the connection pool unless WithMaxConns says otherwise.
const DefaultMaxConns = 16

type core = sqldb.Store

// Store is a repository.Repository backed by PostgreSQL. Its methods are
// documented on repository.Repository. Safe for concurrent use.
type Store struct {
	*core
}

var _ repository.Repository = (*Store)(nil)

type options struct {
	now      func() time.Time
	logger   *slog.Logger
	maxConns int
}

// Option configures Open.
type Option func(*options)

// WithClock sets the clock used for created, updated and enrolled times
// (default time.Now).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithLogger sets the logger that records applied schema migrations
// (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithMaxConns bounds the connection pool (default DefaultMaxConns).
func WithMaxConns(n int) Option { return func(o *options) { o.maxConns = n } }

// Migrations returns how many schema migrations this binary embeds.
func Migrations() int { return sqldb.CountMigrations(migrationFS, "migrations") }

// Open connects to the database named by dsn (a postgres:// URL or a
// key=value string) and migrates it to the current schema. The DSN is
// never logged or echoed in errors.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	o := options{maxConns: DefaultMaxConns}
	for _, opt := range opts {
		opt(&o)
	}
	if dsn == "" {
		return nil, decnet.Errorf(decnet.ErrInvalid, "database", "", "postgres: DSN is required")
	}
	if o.maxConns < 1 {
		return nil, decnet.Errorf(decnet.ErrInvalid, "database", "", "postgres: max connections must be at least 1")
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx redacts the password from its parse errors.
		return nil, fmt.Errorf("postgres: %w: %w", decnet.ErrInvalid, err)
	}
	ms, err := sqldb.LoadMigrations(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(o.maxConns)
	db.SetMaxIdleConns(o.maxConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("postgres: connect to %s: %w: %w", cfg.Host, decnet.ErrUnavailable, err)
	}
	d := dialect()
	now := o.now
	if now == nil {
		now = time.Now
	}
	if err := sqldb.Migrate(ctx, db, d, ms, now, o.logger); err != nil {
		db.Close()
		return nil, err
	}
	return &Store{core: sqldb.New(db, d, sqldb.Config{Now: o.now})}, nil
}

// BulkLoad inserts hosts and then deckies in one transaction, validating
// every record first as AddHost and CreateDecky do. Meant for imports and
// benchmarks; versions start at 1.
func (s *Store) BulkLoad(ctx context.Context, hosts []repository.Host, deckies []repository.Decky) error {
	return s.core.BulkLoad(ctx, hosts, deckies)
}

// migrationLockKey names the advisory lock: one per target schema, so
// tenants sharing a database migrate independently.
const migrationLockKey = `hashtextextended('decnet.schema_migrations:' || current_schema(), 0)`

func dialect() *sqldb.Dialect {
	return &sqldb.Dialect{
		Name:     "postgres",
		Numbered: true,
		Classify: classify,
		LockMigrations: func(ctx context.Context, c *sql.Conn) (func(), error) {
			var schema sql.NullString
			if err := c.QueryRowContext(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
				return nil, err
			}
			if !schema.Valid {
				return nil, decnet.Errorf(decnet.ErrInvalid, "database", "", "postgres: no schema of the search_path exists")
			}
			if _, err := c.ExecContext(ctx, `SELECT pg_advisory_lock(`+migrationLockKey+`)`); err != nil {
				return nil, err
			}
			return func() {
				// The caller's ctx may be done; the unlock must still run
				// (closing the connection would release it too).
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if _, err := c.ExecContext(ctx, `SELECT pg_advisory_unlock(`+migrationLockKey+`)`); err != nil {
					_ = c.Raw(func(any) error { return errors.New("discard connection") })
				}
			}, nil
		},
	}
}

func classify(err error) sqldb.Kind {
	if err == nil {
		return sqldb.KindOther
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505":
			return sqldb.KindUnique
		case "23503":
			return sqldb.KindForeignKey
		case "23514", "23502":
			return sqldb.KindCheck
		case "57P01", "57P02", "57P03", "53300", "08000", "08003", "08006", "08001", "08004":
			return sqldb.KindUnavailable
		}
		return sqldb.KindOther
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	if errors.As(err, &ce) || errors.As(err, &ne) || pgconn.SafeToRetry(err) {
		return sqldb.KindUnavailable
	}
	return sqldb.KindOther
}
