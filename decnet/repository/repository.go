// Package repository defines the master's store: the single source of the
// swarm's desired state (hosts, deckies and their assignment, join tokens,
// denied certificates) and its append-only event log.
//
// Repository is the one deliberately shared contract of the SDK: it has an
// embedded implementation (repository/sqlite, the default) and a production
// one (repository/postgres), and both pass the same conformance suite
// (repository/repotest).
//
// Conventions shared by every implementation:
//   - every "not found" wraps decnet.ErrNotFound and every uniqueness
//     violation or stale version wraps decnet.ErrConflict;
//   - lists are ordered deterministically: hosts and deckies by name, events
//     by id;
//   - Host and Decky rows carry a Version; an update must present the version
//     it read, and a stale one fails with decnet.ErrConflict (optimistic
//     concurrency). Runtime-only writes (RecordHeartbeat, SetHostStatus,
//     SetDeckyState) do not check or bump versions;
//   - the runtime fields (Host.Status and Host.LastHeartbeat; Decky.State and
//     Decky.LastError) are written only by the runtime methods
//     (RecordHeartbeat, SetHostStatus, SetDeckyState, SetDeckyStateWithEvent)
//     and UpdateDeckyWithEvent, never by UpdateHost or UpdateDecky: since
//     runtime writes bump no version, an update built from an older read
//     would otherwise write back the old runtime values and undo a heartbeat;
//   - an update never moves a decky to another host: only AssignDecky does;
//   - times are stored in UTC with microsecond precision.
package repository

import (
	"context"
	"fmt"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
)

// HostStatus is a worker's lifecycle state as the master sees it.
type HostStatus string

const (
	HostEnrolled HostStatus = "enrolled" // enrolled, never heard from
	HostActive   HostStatus = "active"   // heartbeats arrive
	HostOffline  HostStatus = "offline"  // silent for 3 heartbeat intervals
)

// Valid reports whether s is a known host status.
func (s HostStatus) Valid() bool {
	return s == HostEnrolled || s == HostActive || s == HostOffline
}

// DeckyState is a decky's runtime state as last reported or dispatched.
type DeckyState string

const (
	DeckyPending     DeckyState = "pending"
	DeckyRunning     DeckyState = "running"
	DeckyDegraded    DeckyState = "degraded"
	DeckyFailed      DeckyState = "failed"
	DeckyTearingDown DeckyState = "tearing_down"
)

// Valid reports whether s is a known decky state.
func (s DeckyState) Valid() bool {
	switch s {
	case DeckyPending, DeckyRunning, DeckyDegraded, DeckyFailed, DeckyTearingDown:
		return true
	}
	return false
}

// Host is an enrolled worker.
type Host struct {
	UUID          string // assigned by AddHost when empty
	Name          string // unique; the certificate CN
	Address       string // IP or DNS name the master dials
	AgentPort     int
	Status        HostStatus
	Fingerprint   string // lowercase hex SHA-256 of the client certificate DER; unique when set
	EnrolledAt    time.Time
	LastHeartbeat time.Time // zero: never
	Notes         string
	Labels        map[string]string
	Version       int64 // set by the repository; present it on update
}

// Decky is a decky's desired state plus its last known runtime state.
//
// The top-level fields are authoritative and the repository keeps Spec in
// step with them (Spec.Name, Services, HostUUID, MutateInterval and
// LastMutated always equal the top-level values on a returned Decky). On
// write, an empty top-level Name, Services, MutateInterval or LastMutated
// (and, on create, HostUUID) is taken from Spec, so a caller may pass a
// bare decnet.Decky in Spec.
type Decky struct {
	Name     string       // unique swarm-wide
	HostUUID string       // empty: master-resident (unihost, or not yet assigned)
	Spec     decnet.Decky // the full decky specification
	// Services is the desired service set. It is authoritative; Spec.Services
	// is kept equal to it by the repository.
	Services []string
	// MutateInterval overrides the default rotation interval; nil inherits
	// it, zero means never.
	MutateInterval *time.Duration
	LastMutated    time.Time // CreateDecky sets it to CreatedAt when zero
	State          DeckyState
	LastError      string
	CreatedAt      time.Time
	UpdatedAt      time.Time
	Version        int64
}

// JoinToken is a one-time enrollment token. Only its hash is stored.
type JoinToken struct {
	Hash      string // lowercase hex SHA-256 of the secret
	Name      string // the worker name the token is bound to
	CreatedAt time.Time
	ExpiresAt time.Time
	UsedAt    time.Time // zero: unused
}

// DeniedFingerprint is a certificate fingerprint refused from now on.
type DeniedFingerprint struct {
	Fingerprint string
	HostName    string
	Reason      string
	DeniedAt    time.Time
}

// Event is one entry of the append-only audit log.
type Event struct {
	ID          int64 // assigned by AppendEvent, increasing
	Time        time.Time
	Kind        string // e.g. "host_enrolled", "decky_mutated", "host_decommissioned"
	HostUUID    string
	HostName    string
	Decky       string
	Actor       string // who asked: "operator:<cn>", "mutator", "master"
	Trigger     string // "scheduled", "operator", …
	OldServices []string
	NewServices []string
	Outcome     string // "ok", "failed", "acknowledged", …
	Error       string
	Detail      map[string]string
}

// HostFilter selects hosts; zero fields match everything.
type HostFilter struct {
	Status HostStatus
}

// DeckyFilter selects deckies; zero fields match everything.
type DeckyFilter struct {
	HostUUID   string // only deckies on this host
	Unassigned bool   // only deckies with no host (master-resident)
	State      DeckyState
}

// EventFilter selects events; zero fields match everything.
type EventFilter struct {
	Kind     string
	HostUUID string
	Decky    string
	Since    time.Time // events at or after
	After    int64     // cursor: events with ID > After
	Limit    int       // 0: DefaultEventLimit; capped at MaxEventLimit
}

// Event list limits.
const (
	DefaultEventLimit = 100
	MaxEventLimit     = 1000
)

// DeckyRuntime is one decky's runtime report inside a heartbeat.
type DeckyRuntime struct {
	Name      string
	State     DeckyState
	LastError string
}

// Heartbeat is what a worker reports; RecordHeartbeat applies it in one transaction.
type Heartbeat struct {
	HostUUID string
	At       time.Time
	Deckies  []DeckyRuntime // deckies not on this host are ignored
}

// DefaultAgentPort is the agent port AddHost records when Host.AgentPort is zero.
const DefaultAgentPort = 8765

// SchemaVersionError is returned when opening a database whose schema is
// newer than this binary knows (it was migrated by a newer release). The
// database is left untouched. It unwraps to decnet.ErrConflict.
type SchemaVersionError struct {
	Database int // the highest migration recorded in the database
	Binary   int // the highest migration this binary embeds
}

func (e *SchemaVersionError) Error() string {
	return fmt.Sprintf("database schema version %d is newer than this binary supports (%d): upgrade decnet or use another database", e.Database, e.Binary)
}

// Unwrap returns decnet.ErrConflict.
func (e *SchemaVersionError) Unwrap() error { return decnet.ErrConflict }

// Repository is the master's store. Implementations are safe for concurrent use.
type Repository interface {
	// AddHost inserts h (UUID generated when empty, Version 1, Status
	// HostEnrolled when empty, AgentPort DefaultAgentPort when zero,
	// EnrolledAt now when zero). A duplicate name, UUID or fingerprint is
	// ErrConflict; an invalid field is ErrInvalid and nothing is written.
	AddHost(ctx context.Context, h Host) (Host, error)
	GetHost(ctx context.Context, uuid string) (Host, error)
	GetHostByName(ctx context.Context, name string) (Host, error)
	GetHostByFingerprint(ctx context.Context, fingerprint string) (Host, error)
	ListHosts(ctx context.Context, f HostFilter) ([]Host, error)
	// UpdateHost writes h's desired fields (Name, Address, AgentPort,
	// Fingerprint, EnrolledAt, Notes, Labels) if h.Version is current and
	// returns the row with its new version. Status and LastHeartbeat are
	// ignored (neither checked nor written; the row's values are returned):
	// they belong to RecordHeartbeat and SetHostStatus. Stale version or a
	// name or fingerprint taken by another host: ErrConflict; unknown UUID:
	// ErrNotFound.
	UpdateHost(ctx context.Context, h Host) (Host, error)
	// SetHostStatus writes only the host's status (e.g. HostOffline for a
	// silent worker; RecordHeartbeat marks it HostActive again). It neither
	// checks nor bumps the version. Unknown UUID: ErrNotFound; unknown
	// status: ErrInvalid.
	SetHostStatus(ctx context.Context, uuid string, status HostStatus) error
	// DeleteHost deletes the host and all its deckies in one transaction.
	DeleteHost(ctx context.Context, uuid string) error
	// Decommission, in one transaction: deletes the host's deckies and the
	// host, denies its fingerprint (when set) and appends ev (its HostUUID and
	// HostName filled in from the row). It returns the deleted host.
	Decommission(ctx context.Context, uuid string, reason string, ev Event) (Host, error)
	// RecordHeartbeat marks the host active with LastHeartbeat = hb.At and
	// writes each listed decky's runtime state, in one transaction.
	RecordHeartbeat(ctx context.Context, hb Heartbeat) error

	// CreateDecky inserts d (Version 1, State DeckyPending when empty,
	// LastMutated = CreatedAt when zero). A duplicate name is ErrConflict; a
	// HostUUID naming no host is ErrNotFound; an invalid field (name,
	// services, state, negative interval, spec) is ErrInvalid.
	CreateDecky(ctx context.Context, d Decky) (Decky, error)
	GetDecky(ctx context.Context, name string) (Decky, error)
	ListDeckies(ctx context.Context, f DeckyFilter) ([]Decky, error)
	// UpdateDecky writes d's desired fields (Spec, Services, MutateInterval,
	// LastMutated) if d.Version is current (a zero LastMutated keeps the
	// stored one) and returns the row with its new version. State and
	// LastError are ignored (neither checked nor written; the row's values
	// are returned): they belong to RecordHeartbeat, SetDeckyState and the
	// outcome records below. A different HostUUID than stored is
	// ErrConflict: use AssignDecky.
	UpdateDecky(ctx context.Context, d Decky) (Decky, error)
	// AssignDecky moves the decky to hostUUID ("" = master-resident) if
	// version is current; an unknown host is ErrNotFound. It is the only
	// method that changes a decky's host.
	AssignDecky(ctx context.Context, name, hostUUID string, version int64) (Decky, error)
	// SetDeckyState writes only the runtime state and last error.
	SetDeckyState(ctx context.Context, name string, state DeckyState, lastError string) error
	// UpdateDeckyWithEvent records the outcome of a change: in one
	// transaction it writes what UpdateDecky writes plus the runtime State
	// (required) and LastError the change leaves the decky in, and appends
	// ev, so the change and its audit record are stored together or not at
	// all. A stale version is ErrConflict and writes neither the row nor the
	// event; an invalid decky or event (no Kind, an ID set, a Decky other
	// than d's name) is ErrInvalid. An empty ev.Decky or ev.HostUUID is
	// filled in from the row. It returns the row and the event as stored.
	UpdateDeckyWithEvent(ctx context.Context, d Decky, ev Event) (Decky, Event, error)
	// SetDeckyStateWithEvent is SetDeckyState and AppendEvent in one
	// transaction (no version check, none bumped), with the same event rules
	// as UpdateDeckyWithEvent. An unknown decky is ErrNotFound and appends
	// nothing.
	SetDeckyStateWithEvent(ctx context.Context, name string, state DeckyState, lastError string, ev Event) (Event, error)
	DeleteDecky(ctx context.Context, name string) error
	// ListDue returns the deckies whose effective interval (their own, else
	// defaultInterval) is non-zero and has elapsed at t: t - LastMutated >= interval.
	// Ordered by name; a negative defaultInterval is ErrInvalid.
	ListDue(ctx context.Context, t time.Time, defaultInterval time.Duration) ([]Decky, error)
	// NextDue returns the earliest time any decky becomes due; ok is false
	// when none ever will.
	NextDue(ctx context.Context, defaultInterval time.Duration) (at time.Time, ok bool, err error)

	// CreateToken stores a join token; a duplicate hash is ErrConflict.
	CreateToken(ctx context.Context, t JoinToken) error
	// ConsumeToken atomically marks the token used at now and returns it.
	// Unknown: ErrNotFound; already used: ErrConflict; expired: ErrUnauthorized.
	ConsumeToken(ctx context.Context, hash string, now time.Time) (JoinToken, error)

	// DenyFingerprint records d (DeniedAt now when zero); denying an already
	// denied fingerprint succeeds and keeps the first record.
	DenyFingerprint(ctx context.Context, d DeniedFingerprint) error
	IsDenied(ctx context.Context, fingerprint string) (bool, error)

	// AppendEvent appends e (Time defaults to now) and returns it with its ID.
	AppendEvent(ctx context.Context, e Event) (Event, error)
	// ListEvents returns events in ID order and the cursor for the next page
	// (0 when there is none).
	ListEvents(ctx context.Context, f EventFilter) (events []Event, next int64, err error)

	Close() error
}
