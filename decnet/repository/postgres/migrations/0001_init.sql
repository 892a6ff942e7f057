-- Times are int8 microseconds since the Unix epoch, UTC; NULL means never.

CREATE TABLE hosts (
	uuid           TEXT PRIMARY KEY,
	name           TEXT NOT NULL UNIQUE,
	address        TEXT NOT NULL DEFAULT '',
	agent_port     INTEGER NOT NULL CHECK (agent_port BETWEEN 1 AND 65535),
	status         TEXT NOT NULL CHECK (status IN ('enrolled', 'active', 'offline')),
	fingerprint    TEXT UNIQUE, -- NULL: not yet known
	enrolled_at    BIGINT NOT NULL,
	last_heartbeat BIGINT,
	notes          TEXT NOT NULL DEFAULT '',
	labels         TEXT NOT NULL DEFAULT 'null',
	version        BIGINT NOT NULL CHECK (version > 0)
);
CREATE INDEX hosts_status ON hosts (status, name);

CREATE TABLE deckies (
	name               TEXT PRIMARY KEY,
	host_uuid          TEXT REFERENCES hosts (uuid),
	spec               TEXT NOT NULL,
	services           TEXT NOT NULL,
	mutate_interval_us BIGINT CHECK (mutate_interval_us >= 0),
	last_mutated       BIGINT NOT NULL,
	state              TEXT NOT NULL CHECK (state IN ('pending', 'running', 'degraded', 'failed', 'tearing_down')),
	last_error         TEXT NOT NULL DEFAULT '',
	created_at         BIGINT NOT NULL,
	updated_at         BIGINT NOT NULL,
	version            BIGINT NOT NULL CHECK (version > 0)
);
CREATE INDEX deckies_host ON deckies (host_uuid, name);
CREATE INDEX deckies_state ON deckies (state, name);
CREATE INDEX deckies_due_default ON deckies (last_mutated) WHERE mutate_interval_us IS NULL;
CREATE INDEX deckies_due_own ON deckies ((last_mutated + mutate_interval_us)) WHERE mutate_interval_us > 0;

CREATE TABLE join_tokens (
	hash       TEXT PRIMARY KEY,
	name       TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL,
	used_at    BIGINT
);

CREATE TABLE denied_fingerprints (
	fingerprint TEXT PRIMARY KEY,
	host_name   TEXT NOT NULL DEFAULT '',
	reason      TEXT NOT NULL DEFAULT '',
	denied_at   BIGINT NOT NULL
);

CREATE TABLE events (
	id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	time         BIGINT NOT NULL,
	kind         TEXT NOT NULL,
	host_uuid    TEXT NOT NULL DEFAULT '',
	host_name    TEXT NOT NULL DEFAULT '',
	decky        TEXT NOT NULL DEFAULT '',
	actor        TEXT NOT NULL DEFAULT '',
	trigger_name TEXT NOT NULL DEFAULT '',
	old_services TEXT NOT NULL DEFAULT 'null',
	new_services TEXT NOT NULL DEFAULT 'null',
	outcome      TEXT NOT NULL DEFAULT '',
	error        TEXT NOT NULL DEFAULT '',
	detail       TEXT NOT NULL DEFAULT 'null'
);
CREATE INDEX events_kind ON events (kind, id);
CREATE INDEX events_host ON events (host_uuid, id);
CREATE INDEX events_decky ON events (decky, id);
CREATE INDEX events_time ON events (time);
