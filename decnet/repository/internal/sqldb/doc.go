// Package sqldb is the database/sql implementation of repository.Repository
// shared by repository/sqlite and repository/postgres. The two backends run
// the same queries; a Dialect supplies what differs between them: placeholder
// syntax, the classification of driver errors, and the migration lock.
//
// Times are stored as int8 microseconds since the Unix epoch (UTC) on both
// backends, so the due-time arithmetic of ListDue/NextDue is the same integer
// expression everywhere and can be indexed (PostgreSQL cannot index
// timestamptz + interval, which is not immutable).
package sqldb
