// Package postgres is the production implementation of
// repository.Repository on PostgreSQL, through pgx v5 and database/sql.
//
// It runs the same queries as repository/sqlite (times are int8
// microseconds since the Unix epoch, UTC, so the due-time expression
// index is immutable) and passes the same conformance suite.
//
// Opening a database applies the embedded migrations (migrations/*.sql),
// each in its own transaction, recorded in schema_migrations, under a
// PostgreSQL advisory lock keyed by the target schema, so masters starting
// together never race a migration. A database migrated by a newer release
// is refused with *repository.SchemaVersionError. Tables live in the first
// schema of the connection's search_path (set it in the DSN, e.g.
// "…?search_path=decnet", to share a database).
package postgres
