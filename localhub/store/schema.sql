-- localhub state. One row per device holds its identity and its twin, so a
-- twin query is a scan of one table with SQLite's JSON functions.
CREATE TABLE IF NOT EXISTS meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS policies (
	name          TEXT PRIMARY KEY,
	primary_key   TEXT NOT NULL,
	secondary_key TEXT NOT NULL,
	rights        TEXT NOT NULL           -- comma list: RegistryRead,RegistryWrite,ServiceConnect,DeviceConnect
);

CREATE TABLE IF NOT EXISTS devices (
	device_id                TEXT PRIMARY KEY,
	generation_id            TEXT NOT NULL,
	etag                     TEXT NOT NULL,            -- identity etag
	status                   TEXT NOT NULL DEFAULT 'enabled',
	status_reason            TEXT NOT NULL DEFAULT '',
	status_updated           TEXT NOT NULL DEFAULT '0001-01-01T00:00:00Z',
	auth_type                TEXT NOT NULL DEFAULT 'sas',
	primary_key              TEXT NOT NULL DEFAULT '',
	secondary_key            TEXT NOT NULL DEFAULT '',
	primary_thumbprint       TEXT NOT NULL DEFAULT '',
	secondary_thumbprint     TEXT NOT NULL DEFAULT '',
	iot_edge                 INTEGER NOT NULL DEFAULT 0,
	device_scope             TEXT NOT NULL DEFAULT '',
	parent_scopes            TEXT NOT NULL DEFAULT '[]', -- JSON array of scopes
	connection_state         TEXT NOT NULL DEFAULT 'Disconnected',
	connection_state_updated TEXT NOT NULL DEFAULT '0001-01-01T00:00:00Z',
	last_activity            TEXT NOT NULL DEFAULT '0001-01-01T00:00:00Z',
	c2d_count                INTEGER NOT NULL DEFAULT 0,
	created                  TEXT NOT NULL,
	-- twin
	twin_etag                TEXT NOT NULL,
	twin_version             INTEGER NOT NULL DEFAULT 1,
	tags                     TEXT NOT NULL DEFAULT '{}', -- JSON object
	desired                  TEXT NOT NULL DEFAULT '{}', -- JSON object, no $version/$metadata
	desired_meta             TEXT NOT NULL DEFAULT '{}', -- JSON object: $lastUpdated[/$lastUpdatedVersion] per level
	desired_version          INTEGER NOT NULL DEFAULT 1,
	reported                 TEXT NOT NULL DEFAULT '{}',
	reported_meta            TEXT NOT NULL DEFAULT '{}',
	reported_version         INTEGER NOT NULL DEFAULT 1,
	model_id                 TEXT NOT NULL DEFAULT ''
);

CREATE TABLE IF NOT EXISTS telemetry (
	seq              INTEGER PRIMARY KEY AUTOINCREMENT,
	device_id        TEXT NOT NULL,
	enqueued         TEXT NOT NULL,
	message_id       TEXT NOT NULL DEFAULT '',
	correlation_id   TEXT NOT NULL DEFAULT '',
	content_type     TEXT NOT NULL DEFAULT '',
	content_encoding TEXT NOT NULL DEFAULT '',
	app_props        TEXT NOT NULL DEFAULT '{}',  -- JSON object of application properties
	sys_props        TEXT NOT NULL DEFAULT '{}',  -- JSON object of the other system properties
	body             BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS telemetry_device ON telemetry(device_id, seq);

-- Enrollment groups (DPS-like symmetric-key groups): an unknown device whose
-- token is signed with base64(HMAC-SHA256(group key, device id)) is
-- registered on its first connect, as a child of the group's parent.
CREATE TABLE IF NOT EXISTS enrollments (
	id            TEXT PRIMARY KEY,
	primary_key   TEXT NOT NULL,
	secondary_key TEXT NOT NULL,
	parent_id     TEXT NOT NULL DEFAULT '',
	status        TEXT NOT NULL DEFAULT 'enabled',
	etag          TEXT NOT NULL,
	created       TEXT NOT NULL,
	updated       TEXT NOT NULL
);
