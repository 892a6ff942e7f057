package sqlite_test

import (
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"go.uber.org/goleak"
	_ "modernc.org/sqlite"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/repository"
	"github.com/decnet-swarm/sdk/decnet/repository/repotest"
	"github.com/decnet-swarm/sdk/decnet/repository/sqlite"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func openTemp(t *testing.T) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "decnet.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	repotest.Run(t, func(t *testing.T) repository.Repository { return openTemp(t) })
}

func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestOpenMigratesAndRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "decnet.db")
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddHost(t.Context(), repository.Host{Name: "w"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// Reopening keeps the data and applies nothing twice.
	s, err = sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	if _, err := s.GetHostByName(t.Context(), "w"); err != nil {
		t.Fatalf("data lost on reopen: %v", err)
	}
	var n, max int
	if err := rawDB(t, path).QueryRow(`SELECT COUNT(*), MAX(version) FROM schema_migrations`).Scan(&n, &max); err != nil {
		t.Fatal(err)
	}
	if n != sqlite.Migrations() || max != sqlite.Migrations() || n == 0 {
		t.Fatalf("schema_migrations holds %d rows up to %d, want %d", n, max, sqlite.Migrations())
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "decnet.db")
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	future := sqlite.Migrations() + 1
	db := rawDB(t, path)
	if _, err := db.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'from_the_future', 0)`, future); err != nil {
		t.Fatal(err)
	}
	_, err = sqlite.Open(t.Context(), path)
	var sv *repository.SchemaVersionError
	if !errors.As(err, &sv) || sv.Database != future || sv.Binary != sqlite.Migrations() {
		t.Fatalf("Open of a newer schema: %v, want *SchemaVersionError{%d, %d}", err, future, sqlite.Migrations())
	}
	if !errors.Is(err, decnet.ErrConflict) {
		t.Fatalf("SchemaVersionError does not unwrap to ErrConflict: %v", err)
	}
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil || n != sqlite.Migrations()+1 {
		t.Fatalf("refused Open changed schema_migrations: %d rows, %v", n, err)
	}
}

func TestEveryConnectionHasPragmas(t *testing.T) {
	s := openTemp(t)
	db := s.DB()
	db.SetMaxIdleConns(4)
	// Hold several connections at once so the pool must open new ones.
	var conns []*sql.Conn
	for range 4 {
		c, err := db.Conn(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for i, c := range conns {
		var fk, busy int
		var mode string
		if err := c.QueryRowContext(t.Context(), `PRAGMA foreign_keys`).Scan(&fk); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRowContext(t.Context(), `PRAGMA busy_timeout`).Scan(&busy); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRowContext(t.Context(), `PRAGMA journal_mode`).Scan(&mode); err != nil {
			t.Fatal(err)
		}
		if fk != 1 || busy != int(sqlite.DefaultBusyTimeout.Milliseconds()) || mode != "wal" {
			t.Fatalf("connection %d: foreign_keys=%d busy_timeout=%d journal_mode=%s", i, fk, busy, mode)
		}
		c.Close()
	}
}

// Two Stores on one file (two master processes, or a CLI beside the
// server) write concurrently without SQLITE_BUSY: BEGIN IMMEDIATE plus the
// busy timeout queue them.
func TestTwoStoresOneFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "decnet.db")
	var stores [2]*sqlite.Store
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = sqlite.Open(t.Context(), path)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Open %d: %v", i, err)
		}
		t.Cleanup(func() { stores[i].Close() })
	}
	const per = 50
	errc := make(chan error, 2*per)
	for i, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range per {
				_, err := s.AppendEvent(t.Context(), repository.Event{Kind: "tick", Decky: string(rune('a' + i)), Actor: string(rune('0' + j%10))})
				errc <- err
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Fatalf("concurrent write from two stores: %v", err)
		}
	}
	evs, _, err := stores[0].ListEvents(t.Context(), repository.EventFilter{Limit: 1000})
	if err != nil || len(evs) != 2*per {
		t.Fatalf("events: %d, %v", len(evs), err)
	}
}

func TestOpenRejectsEmptyPath(t *testing.T) {
	_, err := sqlite.Open(t.Context(), "")
	if !errors.Is(err, decnet.ErrInvalid) {
		t.Fatalf("Open(\"\"): %v, want ErrInvalid", err)
	}
}

func TestDatabaseFilesAreOwnerOnly(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "decnet.db")
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.AddHost(t.Context(), repository.Host{Name: "w"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Fatalf("%s has mode %v, want owner-only", filepath.Base(p), fi.Mode().Perm())
		}
	}
}
