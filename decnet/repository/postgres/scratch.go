package postgres

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/repository/internal/sqldb"
)

var schemaPrefixRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,30}$`)

// ScratchSchema creates a new, uniquely named schema (prefix + random hex) in
// the database dsn points at and returns a DSN whose search_path selects it,
// so Open on that DSN puts every table there. drop removes the schema and
// everything in it. It is meant for tests and benchmarks that must not touch
// each other's data; prefix is lowercase letters, digits and underscores.
func ScratchSchema(ctx context.Context, dsn, prefix string) (scoped string, drop func(context.Context) error, err error) {
	if !schemaPrefixRE.MatchString(prefix) {
		return "", nil, decnet.Errorf(decnet.ErrInvalid, "schema", prefix, "schema prefix %q must match [a-z][a-z0-9_]{0,30}", prefix)
	}
	u, err := url.Parse(dsn)
	if err != nil || !strings.HasPrefix(u.Scheme, "postgres") {
		return "", nil, decnet.Errorf(decnet.ErrInvalid, "dsn", "", "the DSN must be a postgres:// URL")
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", nil, err
	}
	schema := prefix + "_" + hex.EncodeToString(b[:])
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		return "", nil, fmt.Errorf("open admin connection: %w", decnet.ErrUnavailable)
	}
	if _, err := admin.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
		admin.Close()
		return "", nil, schemaErr("create", schema, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	drop = func(ctx context.Context) error {
		defer admin.Close()
		if _, err := admin.ExecContext(ctx, `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			return schemaErr("drop", schema, err)
		}
		return nil
	}
	return u.String(), drop, nil
}

func schemaErr(op, schema string, err error) error {
	if classify(err) == sqldb.KindUnavailable {
		return fmt.Errorf("%s schema %s: %w: %w", op, schema, decnet.ErrUnavailable, err)
	}
	return fmt.Errorf("%s schema %s: %w", op, schema, err)
}
