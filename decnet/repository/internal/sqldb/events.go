package sqldb

import (
	"context"
	"database/sql"
	"slices"

	"github.com/decnet-swarm/sdk/decnet/repository"
)

const eventCols = `time, kind, host_uuid, host_name, decky, actor, trigger_name, old_services, new_services, outcome, error, detail`

func (s *Store) appendEvent(ctx context.Context, q querier, e repository.Event) (repository.Event, error) {
	if e.Kind == "" {
		return e, invalid("kind", "required")
	}
	if e.ID != 0 {
		return e, invalid("id", "assigned by the repository")
	}
	e.Time = ts(e.Time)
	if e.Time.IsZero() {
		e.Time = s.stamp()
	}
	e.OldServices, e.NewServices = emptyNil(e.OldServices), emptyNil(e.NewServices)
	if len(e.Detail) == 0 {
		e.Detail = nil
	}
	e.Error = truncText(e.Error)
	err := q.QueryRowContext(ctx, s.d.q(`INSERT INTO events (`+eventCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`),
		micro(e.Time), e.Kind, e.HostUUID, e.HostName, e.Decky, e.Actor, e.Trigger,
		encodeJSON(e.OldServices), encodeJSON(e.NewServices), e.Outcome, e.Error, encodeJSON(e.Detail)).Scan(&e.ID)
	if err != nil {
		return e, s.dbErr("append event", err)
	}
	return e, nil
}

func emptyNil(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return slices.Clone(s)
}

// AppendEvent implements repository.Repository.
func (s *Store) AppendEvent(ctx context.Context, e repository.Event) (repository.Event, error) {
	if e.Kind == "" {
		return repository.Event{}, invalid("kind", "required")
	}
	var out repository.Event
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		out, err = s.appendEvent(ctx, tx, e)
		return err
	})
	if err != nil {
		return repository.Event{}, err
	}
	return out, nil
}

// ListEvents implements repository.Repository.
func (s *Store) ListEvents(ctx context.Context, f repository.EventFilter) ([]repository.Event, int64, error) {
	switch {
	case f.Limit < 0:
		return nil, 0, invalid("limit", "must not be negative")
	case f.After < 0:
		return nil, 0, invalid("after", "must not be negative")
	case f.Limit == 0:
		f.Limit = repository.DefaultEventLimit
	case f.Limit > repository.MaxEventLimit:
		f.Limit = repository.MaxEventLimit
	}
	query, args := `SELECT id, `+eventCols+` FROM events WHERE id > ?`, []any{f.After}
	if f.Kind != "" {
		query += ` AND kind = ?`
		args = append(args, f.Kind)
	}
	if f.HostUUID != "" {
		query += ` AND host_uuid = ?`
		args = append(args, f.HostUUID)
	}
	if f.Decky != "" {
		query += ` AND decky = ?`
		args = append(args, f.Decky)
	}
	if !f.Since.IsZero() {
		query += ` AND time >= ?`
		args = append(args, micro(ts(f.Since)))
	}
	args = append(args, f.Limit+1)
	out, err := queryAll(ctx, s, "list events", query+` ORDER BY id LIMIT ?`, scanEvent, args...)
	if err != nil {
		return nil, 0, err
	}
	var next int64
	if len(out) > f.Limit {
		out = out[:f.Limit]
		next = out[len(out)-1].ID
	}
	return out, next, nil
}

func scanEvent(r scanner) (repository.Event, error) {
	var (
		e                  repository.Event
		at                 sql.NullInt64
		oldS, newS, detail string
		err                error
	)
	if err = r.Scan(&e.ID, &at, &e.Kind, &e.HostUUID, &e.HostName, &e.Decky, &e.Actor, &e.Trigger,
		&oldS, &newS, &e.Outcome, &e.Error, &detail); err != nil {
		return e, err
	}
	e.Time = unmicro(at)
	if e.OldServices, err = decodeStrings(oldS); err != nil {
		return e, err
	}
	if e.NewServices, err = decodeStrings(newS); err != nil {
		return e, err
	}
	e.Detail, err = decodeMap(detail)
	return e, err
}
