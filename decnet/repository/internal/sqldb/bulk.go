package sqldb

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/repository"
)

// bulkRows is how many rows one multi-row INSERT carries (11 columns each,
// well under both backends' bound-parameter limits).
const bulkRows = 500

// BulkLoad inserts hosts and then deckies in one transaction with
// multi-row INSERTs, for imports and benchmarks. Every record is validated
// first, as AddHost and CreateDecky would; nothing is written unless all
// are valid and none collides. Versions start at 1.
func (s *Store) BulkLoad(ctx context.Context, hosts []repository.Host, deckies []repository.Decky) error {
	now := s.stamp()
	hs := make([]repository.Host, len(hosts))
	for i, h := range hosts {
		h, err := normHost(h, true)
		if err != nil {
			return fmt.Errorf("hosts[%d]: %w", i, err)
		}
		if h.UUID == "" {
			h.UUID = newUUID()
		}
		if h.EnrolledAt.IsZero() {
			h.EnrolledAt = now
		}
		hs[i] = h
	}
	ds := make([]repository.Decky, len(deckies))
	for i, d := range deckies {
		d, err := normDecky(d, true)
		if err != nil {
			return fmt.Errorf("deckies[%d]: %w", i, err)
		}
		d.CreatedAt, d.UpdatedAt = now, now
		if d.LastMutated.IsZero() {
			d.LastMutated = now
		}
		ds[i] = d
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		for start := 0; start < len(hs); start += bulkRows {
			batch := hs[start:min(start+bulkRows, len(hs))]
			args := make([]any, 0, len(batch)*11)
			for _, h := range batch {
				args = append(args, h.UUID, h.Name, h.Address, h.AgentPort, string(h.Status), nullStr(h.Fingerprint),
					micro(h.EnrolledAt), micro(h.LastHeartbeat), h.Notes, encodeJSON(h.Labels), int64(1))
			}
			if _, err := tx.ExecContext(ctx, s.d.q(`INSERT INTO hosts (`+hostCols+`) VALUES `+values(len(batch), 11)), args...); err != nil {
				return s.bulkErr("hosts", err)
			}
		}
		for start := 0; start < len(ds); start += bulkRows {
			batch := ds[start:min(start+bulkRows, len(ds))]
			args := make([]any, 0, len(batch)*11)
			for _, d := range batch {
				args = append(args, d.Name, nullStr(d.HostUUID), storedSpec(d), encodeJSON(d.Services),
					intervalMicros(d.MutateInterval), micro(d.LastMutated), string(d.State), d.LastError,
					micro(d.CreatedAt), micro(d.UpdatedAt), int64(1))
			}
			if _, err := tx.ExecContext(ctx, s.d.q(`INSERT INTO deckies (`+deckyCols+`) VALUES `+values(len(batch), 11)), args...); err != nil {
				return s.bulkErr("deckies", err)
			}
		}
		return nil
	})
}

func (s *Store) bulkErr(what string, err error) error {
	switch s.d.Classify(err) {
	case KindUnique:
		return decnet.Errorf(decnet.ErrConflict, what, "", "bulk load: a %s row collides with an existing one: %v", what, err)
	case KindForeignKey:
		return decnet.Errorf(decnet.ErrNotFound, "host", "", "bulk load: a decky names an unknown host: %v", err)
	}
	return s.dbErr("bulk load "+what, err)
}

func values(rows, cols int) string {
	one := "(" + strings.TrimSuffix(strings.Repeat("?, ", cols), ", ") + ")"
	return strings.TrimSuffix(strings.Repeat(one+", ", rows), ", ")
}
