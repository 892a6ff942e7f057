package sqldb

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/repository"
)

const deckyCols = `name, host_uuid, spec, services, mutate_interval_us, last_mutated, state, last_error, created_at, updated_at, version`

func scanDecky(r scanner) (repository.Decky, error) {
	var (
		d                         repository.Decky
		host                      sql.NullString
		spec, services, state     string
		interval                  sql.NullInt64
		lastMut, created, updated sql.NullInt64
	)
	if err := r.Scan(&d.Name, &host, &spec, &services, &interval, &lastMut, &state, &d.LastError,
		&created, &updated, &d.Version); err != nil {
		return d, err
	}
	d.HostUUID = host.String
	d.State = repository.DeckyState(state)
	d.LastMutated = unmicro(lastMut)
	d.CreatedAt = unmicro(created)
	d.UpdatedAt = unmicro(updated)
	if interval.Valid {
		iv := time.Duration(interval.Int64) * time.Microsecond
		d.MutateInterval = &iv
	}
	svcs, err := decodeStrings(services)
	if err != nil {
		return d, fmt.Errorf("decky %q services: %w", d.Name, err)
	}
	d.Services = svcs
	if err := json.Unmarshal([]byte(spec), &d.Spec); err != nil {
		return d, fmt.Errorf("decky %q spec: %w", d.Name, err)
	}
	d.Spec.Name = d.Name
	d.Spec.Services = slices.Clone(d.Services)
	d.Spec.HostUUID = d.HostUUID
	d.Spec.LastMutated = d.LastMutated
	if d.MutateInterval != nil {
		d.Spec.MutateInterval = decnet.Interval(*d.MutateInterval)
	}
	return d, nil
}

func intervalMicros(p *time.Duration) any {
	if p == nil {
		return nil
	}
	return p.Microseconds()
}

// CreateDecky implements repository.Repository.
func (s *Store) CreateDecky(ctx context.Context, d repository.Decky) (repository.Decky, error) {
	d, err := normDecky(d, true)
	if err != nil {
		return repository.Decky{}, err
	}
	now := s.stamp()
	d.CreatedAt, d.UpdatedAt, d.Version = now, now, 1
	if d.LastMutated.IsZero() {
		d.LastMutated = now
	}
	d.Spec.LastMutated = d.LastMutated
	err = s.write(ctx, func(tx *sql.Tx) error {
		return s.insertDecky(ctx, tx, d)
	})
	if err != nil {
		return repository.Decky{}, err
	}
	return d, nil
}

func (s *Store) insertDecky(ctx context.Context, tx *sql.Tx, d repository.Decky) error {
	_, err := tx.ExecContext(ctx, s.d.q(`INSERT INTO deckies (`+deckyCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		d.Name, nullStr(d.HostUUID), storedSpec(d), encodeJSON(d.Services), intervalMicros(d.MutateInterval),
		micro(d.LastMutated), string(d.State), d.LastError, micro(d.CreatedAt), micro(d.UpdatedAt), d.Version)
	switch s.d.Classify(err) {
	case KindOther:
		if err != nil {
			return s.dbErr("create decky", err)
		}
		return nil
	case KindUnique:
		return decnet.Errorf(decnet.ErrConflict, "decky", d.Name, "decky %q already exists", d.Name)
	case KindForeignKey:
		return notFound("host", d.HostUUID)
	default:
		return s.dbErr("create decky", err)
	}
}

func (s *Store) getDecky(ctx context.Context, q querier, name string) (repository.Decky, error) {
	d, err := scanDecky(q.QueryRowContext(ctx, s.d.q(`SELECT `+deckyCols+` FROM deckies WHERE name = ?`), name))
	if isNoRows(err) {
		return repository.Decky{}, notFound("decky", name)
	}
	if err != nil {
		return repository.Decky{}, s.dbErr("get decky", err)
	}
	return d, nil
}

// GetDecky implements repository.Repository.
func (s *Store) GetDecky(ctx context.Context, name string) (repository.Decky, error) {
	if name == "" {
		return repository.Decky{}, invalid("name", "required")
	}
	return s.getDecky(ctx, s.db, name)
}

func (s *Store) listDeckies(ctx context.Context, query string, args ...any) ([]repository.Decky, error) {
	return queryAll(ctx, s, "list deckies", query, scanDecky, args...)
}

// ListDeckies implements repository.Repository.
func (s *Store) ListDeckies(ctx context.Context, f repository.DeckyFilter) ([]repository.Decky, error) {
	query, args := `SELECT `+deckyCols+` FROM deckies WHERE 1 = 1`, []any{}
	switch {
	case f.HostUUID != "" && f.Unassigned:
		return nil, invalid("unassigned", "cannot be combined with host_uuid")
	case f.HostUUID != "":
		query += ` AND host_uuid = ?`
		args = append(args, f.HostUUID)
	case f.Unassigned:
		query += ` AND host_uuid IS NULL`
	}
	if f.State != "" {
		if !f.State.Valid() {
			return nil, invalid("state", "unknown decky state %q", f.State)
		}
		query += ` AND state = ?`
		args = append(args, string(f.State))
	}
	return s.listDeckies(ctx, query+` ORDER BY name`, args...)
}

// UpdateDecky implements repository.Repository. State and LastError are
// runtime fields: they are neither checked nor written, and the row's values
// are returned.
func (s *Store) UpdateDecky(ctx context.Context, d repository.Decky) (repository.Decky, error) {
	d.State, d.LastError = "", ""
	d, err := normDecky(d, false)
	if err != nil {
		return repository.Decky{}, err
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		d, err = s.updateDecky(ctx, tx, d)
		return err
	})
	if err != nil {
		return repository.Decky{}, err
	}
	return d, nil
}

// UpdateDeckyWithEvent implements repository.Repository.
func (s *Store) UpdateDeckyWithEvent(ctx context.Context, d repository.Decky, ev repository.Event) (repository.Decky, repository.Event, error) {
	if d.State == "" {
		return repository.Decky{}, repository.Event{}, invalid("state", "required: the state the recorded change leaves the decky in")
	}
	d, err := normDecky(d, false)
	if err != nil {
		return repository.Decky{}, repository.Event{}, err
	}
	if err := checkDeckyEvent(ev, d.Name); err != nil {
		return repository.Decky{}, repository.Event{}, err
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		if d, err = s.updateDecky(ctx, tx, d); err != nil {
			return err
		}
		ev, err = s.appendEvent(ctx, tx, fillDeckyEvent(ev, d.Name, d.HostUUID))
		return err
	})
	if err != nil {
		return repository.Decky{}, repository.Event{}, err
	}
	return d, ev, nil
}

// updateDecky writes the normalised d in tx if its version is current and
// returns the row as written. The runtime fields State and LastError are
// written only when d.State is set; otherwise the row's are returned.
func (s *Store) updateDecky(ctx context.Context, tx *sql.Tx, d repository.Decky) (repository.Decky, error) {
	cur, err := s.getDecky(ctx, tx, d.Name)
	if err != nil {
		return d, err
	}
	if cur.Version != d.Version {
		return d, decnet.Errorf(decnet.ErrConflict, "decky", d.Name,
			"decky %q was changed concurrently: version %d is stale (now %d)", d.Name, d.Version, cur.Version)
	}
	if cur.HostUUID != d.HostUUID {
		return d, decnet.Errorf(decnet.ErrConflict, "decky", d.Name,
			"decky %q is on host %q: an update does not move it (use AssignDecky)", d.Name, cur.HostUUID)
	}
	if d.LastMutated.IsZero() {
		d.LastMutated = cur.LastMutated
	}
	d.Spec.LastMutated = d.LastMutated
	d.CreatedAt, d.UpdatedAt = cur.CreatedAt, s.stamp()
	// The runtime fields are set from the statement's own row (RETURNING),
	// never from the read above: a heartbeat may land in between.
	set, args := `spec = ?, services = ?, mutate_interval_us = ?, last_mutated = ?, updated_at = ?`,
		[]any{storedSpec(d), encodeJSON(d.Services), intervalMicros(d.MutateInterval), micro(d.LastMutated), micro(d.UpdatedAt)}
	if d.State != "" {
		set += `, state = ?, last_error = ?`
		args = append(args, string(d.State), d.LastError)
	}
	var state string
	err = tx.QueryRowContext(ctx, s.d.q(`UPDATE deckies SET `+set+`, version = version + 1
WHERE name = ? AND version = ? RETURNING state, last_error`), append(args, d.Name, d.Version)...).Scan(&state, &d.LastError)
	if isNoRows(err) {
		return d, decnet.Errorf(decnet.ErrConflict, "decky", d.Name, "decky %q was changed concurrently", d.Name)
	}
	if err != nil {
		return d, s.dbErr("update decky", err)
	}
	d.State = repository.DeckyState(state)
	d.Version++
	return d, nil
}

// AssignDecky implements repository.Repository.
func (s *Store) AssignDecky(ctx context.Context, name, hostUUID string, version int64) (repository.Decky, error) {
	v := &decnet.ValidationError{}
	if name == "" {
		v.Add("name", "required")
	}
	if hostUUID != "" && !validHostUUID(hostUUID) {
		v.Add("host_uuid", "%q is not a valid host uuid", hostUUID)
	}
	if err := v.Err(); err != nil {
		return repository.Decky{}, err
	}
	var d repository.Decky
	err := s.write(ctx, func(tx *sql.Tx) error {
		cur, err := s.getDecky(ctx, tx, name)
		if err != nil {
			return err
		}
		if cur.Version != version {
			return decnet.Errorf(decnet.ErrConflict, "decky", name,
				"decky %q was changed concurrently: version %d is stale (now %d)", name, version, cur.Version)
		}
		now := s.stamp()
		res, err := tx.ExecContext(ctx, s.d.q(`UPDATE deckies SET host_uuid = ?, updated_at = ?, version = version + 1
WHERE name = ? AND version = ?`), nullStr(hostUUID), micro(now), name, version)
		switch s.d.Classify(err) {
		case KindOther:
			if err != nil {
				return s.dbErr("assign decky", err)
			}
		case KindForeignKey:
			return notFound("host", hostUUID)
		default:
			return s.dbErr("assign decky", err)
		}
		if rowsAffected(res) != 1 {
			return decnet.Errorf(decnet.ErrConflict, "decky", name, "decky %q was changed concurrently", name)
		}
		d = cur
		d.HostUUID, d.Spec.HostUUID = hostUUID, hostUUID
		d.UpdatedAt = now
		d.Version++
		return nil
	})
	if err != nil {
		return repository.Decky{}, err
	}
	return d, nil
}

// SetDeckyState implements repository.Repository.
func (s *Store) SetDeckyState(ctx context.Context, name string, state repository.DeckyState, lastError string) error {
	if err := checkDeckyState(name, state); err != nil {
		return err
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		_, err := s.setDeckyState(ctx, tx, name, state, lastError)
		return err
	})
}

// SetDeckyStateWithEvent implements repository.Repository.
func (s *Store) SetDeckyStateWithEvent(ctx context.Context, name string, state repository.DeckyState, lastError string, ev repository.Event) (repository.Event, error) {
	if err := checkDeckyState(name, state); err != nil {
		return repository.Event{}, err
	}
	if err := checkDeckyEvent(ev, name); err != nil {
		return repository.Event{}, err
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		host, err := s.setDeckyState(ctx, tx, name, state, lastError)
		if err != nil {
			return err
		}
		ev, err = s.appendEvent(ctx, tx, fillDeckyEvent(ev, name, host))
		return err
	})
	if err != nil {
		return repository.Event{}, err
	}
	return ev, nil
}

func checkDeckyState(name string, state repository.DeckyState) error {
	v := &decnet.ValidationError{}
	if name == "" {
		v.Add("name", "required")
	}
	if !state.Valid() {
		v.Add("state", "unknown decky state %q", state)
	}
	return v.Err()
}

// setDeckyState writes the decky's runtime fields in tx and returns its host.
func (s *Store) setDeckyState(ctx context.Context, tx *sql.Tx, name string, state repository.DeckyState, lastError string) (string, error) {
	var host sql.NullString
	err := tx.QueryRowContext(ctx, s.d.q(`UPDATE deckies SET state = ?, last_error = ?, updated_at = ? WHERE name = ? RETURNING host_uuid`),
		string(state), truncText(lastError), micro(s.stamp()), name).Scan(&host)
	if isNoRows(err) {
		return "", notFound("decky", name)
	}
	if err != nil {
		return "", s.dbErr("set decky state", err)
	}
	return host.String, nil
}

// checkDeckyEvent validates the event recorded with a write to decky name
// before anything is written.
func checkDeckyEvent(ev repository.Event, name string) error {
	v := &decnet.ValidationError{}
	if ev.Kind == "" {
		v.Add("event.kind", "required")
	}
	if ev.ID != 0 {
		v.Add("event.id", "assigned by the repository")
	}
	if ev.Decky != "" && ev.Decky != name {
		v.Add("event.decky", "%q differs from the decky written (%q)", ev.Decky, name)
	}
	return v.Err()
}

// fillDeckyEvent fills the event's empty Decky and HostUUID from the row.
func fillDeckyEvent(ev repository.Event, name, host string) repository.Event {
	if ev.Decky == "" {
		ev.Decky = name
	}
	if ev.HostUUID == "" {
		ev.HostUUID = host
	}
	return ev
}

// DeleteDecky implements repository.Repository.
func (s *Store) DeleteDecky(ctx context.Context, name string) error {
	if name == "" {
		return invalid("name", "required")
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.d.q(`DELETE FROM deckies WHERE name = ?`), name)
		if err != nil {
			return s.dbErr("delete decky", err)
		}
		if rowsAffected(res) == 0 {
			return notFound("decky", name)
		}
		return nil
	})
}

// The due queries. A decky with its own interval is due when
// last_mutated + mutate_interval_us <= t (indexed expression, partial on a
// positive interval); one inheriting the default when last_mutated <= t -
// default (partial index on last_mutated where the interval is NULL).
const (
	dueOwn     = `SELECT ` + deckyCols + ` FROM deckies WHERE mutate_interval_us > 0 AND last_mutated + mutate_interval_us <= ?`
	dueDefault = `SELECT ` + deckyCols + ` FROM deckies WHERE mutate_interval_us IS NULL AND last_mutated <= ?`
)

// ListDue implements repository.Repository.
func (s *Store) ListDue(ctx context.Context, t time.Time, defaultInterval time.Duration) ([]repository.Decky, error) {
	if err := checkNonNegative("default_interval", defaultInterval); err != nil {
		return nil, err
	}
	if t.IsZero() {
		return nil, invalid("t", "required")
	}
	// Two indexed queries sorted here: with a UNION ... ORDER BY name the
	// planners prefer walking the primary key over all rows.
	at := ts(t).UnixMicro()
	out, err := s.listDeckies(ctx, dueOwn, at)
	if err != nil {
		return nil, err
	}
	if iv := defaultInterval.Microseconds(); iv > 0 {
		more, err := s.listDeckies(ctx, dueDefault, at-iv)
		if err != nil {
			return nil, err
		}
		out = append(out, more...)
	}
	slices.SortFunc(out, func(a, b repository.Decky) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// NextDue implements repository.Repository.
func (s *Store) NextDue(ctx context.Context, defaultInterval time.Duration) (time.Time, bool, error) {
	if err := checkNonNegative("default_interval", defaultInterval); err != nil {
		return time.Time{}, false, err
	}
	var own, def sql.NullInt64
	if err := s.db.QueryRowContext(ctx,
		`SELECT MIN(last_mutated + mutate_interval_us) FROM deckies WHERE mutate_interval_us > 0`).Scan(&own); err != nil {
		return time.Time{}, false, s.dbErr("next due", err)
	}
	if iv := defaultInterval.Microseconds(); iv > 0 {
		if err := s.db.QueryRowContext(ctx,
			`SELECT MIN(last_mutated) FROM deckies WHERE mutate_interval_us IS NULL`).Scan(&def); err != nil {
			return time.Time{}, false, s.dbErr("next due", err)
		}
		def.Int64 += iv
	}
	switch {
	case own.Valid && def.Valid:
		return unmicro(sql.NullInt64{Int64: min(own.Int64, def.Int64), Valid: true}), true, nil
	case own.Valid:
		return unmicro(own), true, nil
	case def.Valid:
		return unmicro(def), true, nil
	}
	return time.Time{}, false, nil
}
