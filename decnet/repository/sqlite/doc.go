// Package sqlite is the embedded default implementation of
// repository.Repository: one SQLite file in the master's data directory,
// through modernc.org/sqlite (pure Go, so static CGO_ENABLED=0 binaries).
//
// Every pooled connection runs in WAL mode with a busy timeout and foreign
// keys enforced. Writes are serialised inside the process and every write
// transaction starts with BEGIN IMMEDIATE, so concurrent writers queue
// instead of failing with SQLITE_BUSY; readers never wait for writers.
//
// Opening a database applies the embedded migrations (migrations/*.sql),
// each in its own transaction, recorded in schema_migrations; a database
// migrated by a newer release is refused with *repository.SchemaVersionError.
package sqlite
