package sqldb

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/repository"
)

const hostCols = `uuid, name, address, agent_port, status, fingerprint, enrolled_at, last_heartbeat, notes, labels, version`

type scanner interface{ Scan(dest ...any) error }

func scanHost(r scanner) (repository.Host, error) {
	var (
		h                repository.Host
		status, labels   string
		fingerprint      sql.NullString
		enrolled, lastHB sql.NullInt64
	)
	if err := r.Scan(&h.UUID, &h.Name, &h.Address, &h.AgentPort, &status, &fingerprint,
		&enrolled, &lastHB, &h.Notes, &labels, &h.Version); err != nil {
		return h, err
	}
	h.Status = repository.HostStatus(status)
	h.Fingerprint = fingerprint.String
	h.EnrolledAt = unmicro(enrolled)
	h.LastHeartbeat = unmicro(lastHB)
	m, err := decodeMap(labels)
	if err != nil {
		return h, fmt.Errorf("host %q labels: %w", h.Name, err)
	}
	h.Labels = m
	return h, nil
}

// hostConflict explains a unique violation on hosts.
func (s *Store) hostConflict(ctx context.Context, q querier, h repository.Host) error {
	var n int
	_ = q.QueryRowContext(ctx, s.d.q(`SELECT COUNT(*) FROM hosts WHERE name = ?`), h.Name).Scan(&n)
	if n > 0 {
		return decnet.Errorf(decnet.ErrConflict, "host", h.Name, "host name %q is already enrolled", h.Name)
	}
	if h.Fingerprint != "" {
		_ = q.QueryRowContext(ctx, s.d.q(`SELECT COUNT(*) FROM hosts WHERE fingerprint = ?`), h.Fingerprint).Scan(&n)
		if n > 0 {
			return decnet.Errorf(decnet.ErrConflict, "host", h.Name, "certificate fingerprint of host %q is already used by another host", h.Name)
		}
	}
	return decnet.Errorf(decnet.ErrConflict, "host", h.UUID, "host uuid %q already exists", h.UUID)
}

// AddHost implements repository.Repository.
func (s *Store) AddHost(ctx context.Context, h repository.Host) (repository.Host, error) {
	h, err := normHost(h, true)
	if err != nil {
		return repository.Host{}, err
	}
	if h.UUID == "" {
		h.UUID = newUUID()
	}
	if h.EnrolledAt.IsZero() {
		h.EnrolledAt = s.stamp()
	}
	h.Version = 1
	err = s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.d.q(`INSERT INTO hosts (`+hostCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			h.UUID, h.Name, h.Address, h.AgentPort, string(h.Status), nullStr(h.Fingerprint),
			micro(h.EnrolledAt), micro(h.LastHeartbeat), h.Notes, encodeJSON(h.Labels), h.Version)
		if err != nil {
			if s.d.Classify(err) == KindUnique {
				return s.hostConflict(ctx, tx, h)
			}
			return s.dbErr("add host", err)
		}
		return nil
	})
	if err != nil {
		return repository.Host{}, err
	}
	return h, nil
}

func (s *Store) getHost(ctx context.Context, q querier, col, val string) (repository.Host, error) {
	h, err := scanHost(q.QueryRowContext(ctx, s.d.q(`SELECT `+hostCols+` FROM hosts WHERE `+col+` = ?`), val))
	if isNoRows(err) {
		return repository.Host{}, notFound("host", val)
	}
	if err != nil {
		return repository.Host{}, s.dbErr("get host", err)
	}
	return h, nil
}

// GetHost implements repository.Repository.
func (s *Store) GetHost(ctx context.Context, uuid string) (repository.Host, error) {
	if uuid == "" {
		return repository.Host{}, invalid("uuid", "required")
	}
	return s.getHost(ctx, s.db, "uuid", uuid)
}

// GetHostByName implements repository.Repository.
func (s *Store) GetHostByName(ctx context.Context, name string) (repository.Host, error) {
	if name == "" {
		return repository.Host{}, invalid("name", "required")
	}
	return s.getHost(ctx, s.db, "name", name)
}

// GetHostByFingerprint implements repository.Repository.
func (s *Store) GetHostByFingerprint(ctx context.Context, fingerprint string) (repository.Host, error) {
	if fingerprint == "" {
		return repository.Host{}, invalid("fingerprint", "required")
	}
	return s.getHost(ctx, s.db, "fingerprint", fingerprint)
}

// ListHosts implements repository.Repository.
func (s *Store) ListHosts(ctx context.Context, f repository.HostFilter) ([]repository.Host, error) {
	query, args := `SELECT `+hostCols+` FROM hosts`, []any{}
	if f.Status != "" {
		if !f.Status.Valid() {
			return nil, invalid("status", "unknown host status %q", f.Status)
		}
		query += ` WHERE status = ?`
		args = append(args, string(f.Status))
	}
	return queryAll(ctx, s, "list hosts", query+` ORDER BY name`, scanHost, args...)
}

// UpdateHost implements repository.Repository. Status and LastHeartbeat
// are runtime fields: they are neither checked nor written, and the row's
// values are returned.
func (s *Store) UpdateHost(ctx context.Context, h repository.Host) (repository.Host, error) {
	h, err := normHost(h, false)
	if err != nil {
		return repository.Host{}, err
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		var (
			status string
			lastHB sql.NullInt64
		)
		err := tx.QueryRowContext(ctx, s.d.q(`UPDATE hosts SET name = ?, address = ?, agent_port = ?,
	fingerprint = ?, enrolled_at = ?, notes = ?, labels = ?, version = version + 1
WHERE uuid = ? AND version = ? RETURNING status, last_heartbeat`),
			h.Name, h.Address, h.AgentPort, nullStr(h.Fingerprint), micro(h.EnrolledAt),
			h.Notes, encodeJSON(h.Labels), h.UUID, h.Version).Scan(&status, &lastHB)
		switch {
		case err == nil:
			h.Status, h.LastHeartbeat = repository.HostStatus(status), unmicro(lastHB)
			h.Version++
			return nil
		case isNoRows(err):
			cur, err := s.getHost(ctx, tx, "uuid", h.UUID)
			if err != nil {
				return err
			}
			return decnet.Errorf(decnet.ErrConflict, "host", h.UUID,
				"host %q was changed concurrently: version %d is stale (now %d)", h.Name, h.Version, cur.Version)
		case s.d.Classify(err) == KindUnique:
			return s.hostConflict(ctx, tx, h)
		default:
			return s.dbErr("update host", err)
		}
	})
	if err != nil {
		return repository.Host{}, err
	}
	return h, nil
}

// SetHostStatus implements repository.Repository.
func (s *Store) SetHostStatus(ctx context.Context, uuid string, status repository.HostStatus) error {
	v := &decnet.ValidationError{}
	checkHostUUID(v, "uuid", uuid)
	if !status.Valid() {
		v.Add("status", "unknown host status %q (enrolled, active or offline)", status)
	}
	if err := v.Err(); err != nil {
		return err
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.d.q(`UPDATE hosts SET status = ? WHERE uuid = ?`), string(status), uuid)
		if err != nil {
			return s.dbErr("set host status", err)
		}
		if rowsAffected(res) == 0 {
			return notFound("host", uuid)
		}
		return nil
	})
}

// deleteHost deletes the host's deckies and the host; it returns the row.
func (s *Store) deleteHost(ctx context.Context, tx *sql.Tx, uuid string) (repository.Host, error) {
	h, err := s.getHost(ctx, tx, "uuid", uuid)
	if err != nil {
		return h, err
	}
	if _, err := tx.ExecContext(ctx, s.d.q(`DELETE FROM deckies WHERE host_uuid = ?`), uuid); err != nil {
		return h, s.dbErr("delete host deckies", err)
	}
	if _, err := tx.ExecContext(ctx, s.d.q(`DELETE FROM hosts WHERE uuid = ?`), uuid); err != nil {
		return h, s.dbErr("delete host", err)
	}
	return h, nil
}

// DeleteHost implements repository.Repository.
func (s *Store) DeleteHost(ctx context.Context, uuid string) error {
	if uuid == "" {
		return invalid("uuid", "required")
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		_, err := s.deleteHost(ctx, tx, uuid)
		return err
	})
}

// Decommission implements repository.Repository.
func (s *Store) Decommission(ctx context.Context, uuid string, reason string, ev repository.Event) (repository.Host, error) {
	if uuid == "" {
		return repository.Host{}, invalid("uuid", "required")
	}
	if ev.Kind == "" {
		return repository.Host{}, invalid("event.kind", "required")
	}
	var h repository.Host
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		if h, err = s.deleteHost(ctx, tx, uuid); err != nil {
			return err
		}
		now := s.stamp()
		if h.Fingerprint != "" {
			if err := s.deny(ctx, tx, repository.DeniedFingerprint{
				Fingerprint: h.Fingerprint, HostName: h.Name, Reason: reason, DeniedAt: now,
			}); err != nil {
				return err
			}
		}
		ev.HostUUID, ev.HostName = h.UUID, h.Name
		_, err = s.appendEvent(ctx, tx, ev)
		return err
	})
	if err != nil {
		return repository.Host{}, err
	}
	return h, nil
}

// RecordHeartbeat implements repository.Repository.
func (s *Store) RecordHeartbeat(ctx context.Context, hb repository.Heartbeat) error {
	v := &decnet.ValidationError{}
	checkHostUUID(v, "host_uuid", hb.HostUUID)
	if hb.At.IsZero() {
		v.Add("at", "required")
	}
	for i, d := range hb.Deckies {
		if d.Name == "" {
			v.Add(fmt.Sprintf("deckies[%d].name", i), "required")
		}
		if !d.State.Valid() {
			v.Add(fmt.Sprintf("deckies[%d].state", i), "unknown decky state %q", d.State)
		}
	}
	if err := v.Err(); err != nil {
		return err
	}
	at := ts(hb.At)
	return s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.d.q(`UPDATE hosts SET status = ?, last_heartbeat = ? WHERE uuid = ?`),
			string(repository.HostActive), micro(at), hb.HostUUID)
		if err != nil {
			return s.dbErr("record heartbeat", err)
		}
		if rowsAffected(res) == 0 {
			return notFound("host", hb.HostUUID)
		}
		// One UPDATE … FROM (VALUES …) per batch rather than one statement
		// per decky: a heartbeat costs a constant number of round trips.
		// (VALUES columns are column1, column2, … on both backends.)
		now := micro(s.stamp())
		for start := 0; start < len(hb.Deckies); start += bulkRows {
			batch := hb.Deckies[start:min(start+bulkRows, len(hb.Deckies))]
			args := make([]any, 0, 2+3*len(batch))
			args = append(args, now)
			for _, d := range batch {
				args = append(args, d.Name, string(d.State), truncText(d.LastError))
			}
			args = append(args, hb.HostUUID)
			if _, err := tx.ExecContext(ctx, s.d.q(`UPDATE deckies SET state = v.column2, last_error = v.column3, updated_at = ?
FROM (VALUES `+values(len(batch), 3)+`) AS v
WHERE deckies.name = v.column1 AND deckies.host_uuid = ?`), args...); err != nil {
				return s.dbErr("record heartbeat", err)
			}
		}
		return nil
	})
}

func truncText(s string) string {
	if len(s) > maxTextLength {
		return s[:maxTextLength]
	}
	return s
}
