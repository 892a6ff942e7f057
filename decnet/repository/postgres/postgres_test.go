package postgres_test

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/goleak"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/repository"
	"github.com/decnet-swarm/sdk/decnet/repository/postgres"
	"github.com/decnet-swarm/sdk/decnet/repository/repotest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const dsnEnv = "DECNET_TEST_POSTGRES_DSN"

// testDSN returns the test server's DSN or skips.
func testDSN(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv(dsnEnv)
	if dsn == "" {
		t.Skip(dsnEnv + " is not set: PostgreSQL tests skipped")
	}
	return dsn
}

// freshSchema creates a uniquely named schema, dropped when the test ends,
// and returns a DSN whose search_path selects it: every test gets its own
// empty database namespace, so tests run in parallel with each other and
// with other packages.
func freshSchema(t *testing.T) string {
	t.Helper()
	dsn := testDSN(t)
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "dnt_repo_" + hex.EncodeToString(b[:])
	if _, err := admin.ExecContext(t.Context(), `CREATE SCHEMA `+schema); err != nil {
		t.Fatalf("create schema (is PostgreSQL running at %s?): %v", dsnEnv, err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec(`DROP SCHEMA ` + schema + ` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return withSearchPath(t, dsn, schema)
}

func withSearchPath(t *testing.T, dsn, schema string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil || !strings.HasPrefix(u.Scheme, "postgres") {
		t.Fatalf("%s must be a postgres:// URL", dsnEnv)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func openFresh(t *testing.T) *postgres.Store {
	t.Helper()
	dsn := freshSchema(t)
	s, err := postgres.Open(t.Context(), dsn, postgres.WithMaxConns(8))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	// Registered after the schema's cleanup, so it runs before the DROP.
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	testDSN(t)
	repotest.Run(t, func(t *testing.T) repository.Repository { return openFresh(t) })
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	dsn := freshSchema(t)
	s, err := postgres.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.DB().ExecContext(t.Context(), `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, 'from_the_future', 0)`, postgres.Migrations()+1)
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	_, err = postgres.Open(t.Context(), dsn)
	var sv *repository.SchemaVersionError
	if !errors.As(err, &sv) || sv.Database != postgres.Migrations()+1 || sv.Binary != postgres.Migrations() {
		t.Fatalf("Open of a newer schema: %v, want *SchemaVersionError", err)
	}
	if !errors.Is(err, decnet.ErrConflict) {
		t.Fatalf("not ErrConflict: %v", err)
	}
}

// Masters starting together on one empty database: the advisory lock lets
// exactly one migrate; all open successfully and the migrations are
// recorded once.
func TestConcurrentOpensMigrateOnce(t *testing.T) {
	dsn := freshSchema(t)
	const n = 6
	stores := make([]*postgres.Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			stores[i], errs[i] = postgres.Open(t.Context(), dsn, postgres.WithMaxConns(2))
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
		t.Cleanup(func() { stores[i].Close() })
	}
	var rows, max int
	if err := stores[0].DB().QueryRowContext(t.Context(), `SELECT COUNT(*), MAX(version) FROM schema_migrations`).Scan(&rows, &max); err != nil {
		t.Fatal(err)
	}
	if rows != postgres.Migrations() || max != postgres.Migrations() {
		t.Fatalf("schema_migrations: %d rows up to %d, want %d", rows, max, postgres.Migrations())
	}
	if _, err := stores[n-1].AddHost(t.Context(), repository.Host{Name: "w"}); err != nil {
		t.Fatal(err)
	}
	if _, err := stores[0].GetHostByName(t.Context(), "w"); err != nil {
		t.Fatalf("stores do not share the schema: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := postgres.Open(t.Context(), ""); !errors.Is(err, decnet.ErrInvalid) {
		t.Fatalf("empty DSN: %v, want ErrInvalid", err)
	}
	if _, err := postgres.Open(t.Context(), "postgres://u:secret@127.0.0.1:1/x?sslmode=bogus"); !errors.Is(err, decnet.ErrInvalid) {
		t.Fatalf("malformed DSN: %v, want ErrInvalid", err)
	} else if strings.Contains(err.Error(), "secret") {
		t.Fatalf("error echoes the password: %v", err)
	}
	if _, err := postgres.Open(t.Context(), "postgres://u:secret@127.0.0.1:1/x?sslmode=disable&connect_timeout=2"); !errors.Is(err, decnet.ErrUnavailable) {
		t.Fatalf("unreachable server: %v, want ErrUnavailable", err)
	} else if strings.Contains(err.Error(), "secret") {
		t.Fatalf("error echoes the password: %v", err)
	}
}
