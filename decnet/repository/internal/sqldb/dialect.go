package sqldb

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"sync"
)

// Kind classifies a driver error.
type Kind int

// The driver error kinds a Dialect distinguishes.
const (
	KindOther       Kind = iota // anything else: reported as is
	KindUnique                  // unique or primary-key violation
	KindForeignKey              // foreign-key violation
	KindCheck                   // CHECK or NOT NULL violation
	KindUnavailable             // the database could not be reached or is busy
)

// Dialect is what differs between the SQL backends.
type Dialect struct {
	// Name prefixes error messages ("sqlite", "postgres").
	Name string
	// Numbered rewrites the "?" placeholders of every query to "$1", "$2", …
	Numbered bool
	// Classify maps a driver error to a Kind using the driver's error codes.
	Classify func(error) Kind
	// LockMigrations takes a lock that serialises migrations between
	// processes and returns its release (nil: no lock beyond the
	// transactions themselves).
	LockMigrations func(ctx context.Context, c *sql.Conn) (unlock func(), err error)
	// SerializeWrites makes the store run one write transaction at a time
	// (SQLite allows a single writer; waiting in Go is cheaper than waiting
	// in the busy handler).
	SerializeWrites bool

	rebound sync.Map // query → rebound query
}

// q returns query with its placeholders in the dialect's syntax.
func (d *Dialect) q(query string) string {
	if !d.Numbered {
		return query
	}
	if v, ok := d.rebound.Load(query); ok {
		return v.(string)
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	out := b.String()
	d.rebound.Store(query, out)
	return out
}
