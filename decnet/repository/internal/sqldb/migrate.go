package sqldb

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/decnet-swarm/sdk/decnet/repository"
)

// Migration is one embedded schema step.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// CountMigrations returns how many valid migrations dir holds in fsys (0
// when they cannot be loaded): what a backend's Migrations reports.
func CountMigrations(fsys fs.FS, dir string) int {
	ms, err := LoadMigrations(fsys, dir)
	if err != nil {
		return 0
	}
	return len(ms)
}

// LoadMigrations reads dir/NNNN_name.sql from fsys, in version order.
// Versions must start at 1 and have no gaps.
func LoadMigrations(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var out []Migration
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		base := strings.TrimSuffix(e.Name(), ".sql")
		num, name, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration file %q: want NNNN_name.sql", e.Name())
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read migration %q: %w", e.Name(), err)
		}
		out = append(out, Migration{Version: v, Name: name, SQL: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i, m := range out {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migration versions must be 1..n without gaps: found %d at position %d", m.Version, i+1)
		}
	}
	return out, nil
}

// Migrate brings the database up to the last of ms. Each migration runs in
// its own transaction together with its schema_migrations row, so a failed
// step leaves the database at the previous version. A database that records
// a version beyond ms is refused with *repository.SchemaVersionError before
// anything is written.
func Migrate(ctx context.Context, db *sql.DB, d *Dialect, ms []Migration, now func() time.Time, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("%s: migrate: %w", d.Name, err)
	}
	defer conn.Close()
	if d.LockMigrations != nil {
		unlock, err := d.LockMigrations(ctx, conn)
		if err != nil {
			return fmt.Errorf("%s: lock migrations: %w", d.Name, err)
		}
		defer unlock()
	}
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
	version BIGINT PRIMARY KEY,
	name TEXT NOT NULL,
	applied_at BIGINT NOT NULL
)`); err != nil {
		return fmt.Errorf("%s: create schema_migrations: %w", d.Name, err)
	}
	var have sql.NullInt64
	if err := conn.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&have); err != nil {
		return fmt.Errorf("%s: read schema version: %w", d.Name, err)
	}
	if int(have.Int64) > len(ms) {
		return &repository.SchemaVersionError{Database: int(have.Int64), Binary: len(ms)}
	}
	for _, m := range ms[have.Int64:] {
		applied, err := applyMigration(ctx, conn, d, m, now())
		if err != nil {
			return err
		}
		if applied {
			log.InfoContext(ctx, "schema migration applied", "backend", d.Name, "version", m.Version, "name", m.Name)
		}
	}
	return nil
}

func applyMigration(ctx context.Context, conn *sql.Conn, d *Dialect, m Migration, at time.Time) (applied bool, err error) {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("%s: migration %d: begin: %w", d.Name, m.Version, err)
	}
	defer tx.Rollback()
	// Another process may have applied it between our read and our lock
	// (SQLite has no lock beyond the write transaction itself).
	var n int
	if err := tx.QueryRowContext(ctx, d.q(`SELECT COUNT(*) FROM schema_migrations WHERE version = ?`), m.Version).Scan(&n); err != nil {
		return false, fmt.Errorf("%s: migration %d: %w", d.Name, m.Version, err)
	}
	if n > 0 {
		return false, nil
	}
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return false, fmt.Errorf("%s: migration %d (%s): %w", d.Name, m.Version, m.Name, err)
	}
	if _, err := tx.ExecContext(ctx, d.q(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`),
		m.Version, m.Name, at.UnixMicro()); err != nil {
		return false, fmt.Errorf("%s: migration %d: record: %w", d.Name, m.Version, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("%s: migration %d: commit: %w", d.Name, m.Version, err)
	}
	return true, nil
}
