// Package sqlite is the embedded default implementation of
// repository.Repository: one SQLite file in the master's data directory,
// through modernc.org/sqlite (pure Go, so static CGO_ENABLED=0 binaries).
//
// Every pooled connection runs in WAL mode with a busy timeout and foreign
// keys enforced. Writes are serialised inside the process and every write
// transaction starts with BEGIN IMMEDIATE, so concurrent writers queue
// instead of failing with SQLITE_BUSY; readers never wait for writers.
//
// The database file is created owner-only (0600): it holds per-service
// settings, which may be secrets. synchronous=NORMAL is used, the usual
// choice with WAL: a crash of the process loses nothing, a power failure may
// lose the last transactions but never corrupts the file.
//
// Opening a database applies the embedded migrations (migrations/*.sql),
// each in its own transaction, recorded in schema_migrations; a database
// migrated by a newer release is refused with *repository.SchemaVersionError.
package sqlite
