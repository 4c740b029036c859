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

-- Fleet operations (issue 5) ------------------------------------------------
-- Import/export jobs: Azure's JobProperties for type import|export. The
-- job's files (the uploaded import input, the export output devices.txt,
-- importErrors.log) are kept as chunks in import_export_blobs instead of in
-- blob storage, and go away with their job.
CREATE TABLE IF NOT EXISTS import_export_jobs (
	job_id         TEXT PRIMARY KEY,
	type           TEXT NOT NULL,                 -- import | export
	status         TEXT NOT NULL,                 -- enqueued | running | completed | failed | cancelled
	created        TEXT NOT NULL,
	start_time     TEXT NOT NULL DEFAULT '0001-01-01T00:00:00Z',
	end_time       TEXT NOT NULL DEFAULT '0001-01-01T00:00:00Z',
	exclude_keys   INTEGER NOT NULL DEFAULT 0,
	default_mode   TEXT NOT NULL DEFAULT '',      -- import mode of lines that name none
	total          INTEGER NOT NULL DEFAULT 0,    -- input lines (import) or identities (export)
	processed      INTEGER NOT NULL DEFAULT 0,
	failed         INTEGER NOT NULL DEFAULT 0,
	failure_reason TEXT NOT NULL DEFAULT ''
);

CREATE TABLE IF NOT EXISTS import_export_blobs (
	job_id TEXT NOT NULL REFERENCES import_export_jobs(job_id) ON DELETE CASCADE,
	name   TEXT NOT NULL,                         -- input | devices.txt | importErrors.log
	seq    INTEGER NOT NULL,
	data   BLOB NOT NULL,
	PRIMARY KEY (job_id, name, seq)
);

-- Query indexes that pay on every fleet (measured in docs/benchmarks.md).
-- The expressions are exactly what the query compiler emits (see
-- query.IndexFor; localhub/query/schema_index_test.go keeps them in step), so
-- SQLite's planner matches them. properties.reported.status is the
-- conventional place for a device's state: one index serves comparisons and
-- IN on it (IndexFor().Filter), the other GROUP BY it (IndexFor().GroupBy:
-- type rank and value, covering for COUNT()). Tag paths differ per fleet and
-- are not indexed here.
CREATE INDEX IF NOT EXISTS devices_reported_status ON devices(json_extract(reported, '$.status'));
CREATE INDEX IF NOT EXISTS devices_reported_status_group ON devices(
	(CASE json_type(reported, '$.status') WHEN 'null' THEN 0 WHEN 'true' THEN 1 WHEN 'false' THEN 1 WHEN 'integer' THEN 2 WHEN 'real' THEN 2 WHEN 'text' THEN 3 WHEN 'array' THEN 4 WHEN 'object' THEN 5 END),
	json_extract(reported, '$.status'));

-- The console's fleet page (localhub/console) groups every twin by these
-- four paths on each view; without these indexes it takes 0.6 s over
-- 100,000 twins (docs/benchmarks.md, "Console"). Each json index costs one
-- json_extract per reported-properties write.
CREATE INDEX IF NOT EXISTS devices_connection_state ON devices(connection_state);
CREATE INDEX IF NOT EXISTS devices_device_scope ON devices(device_scope);
CREATE INDEX IF NOT EXISTS devices_reported_connection_state_group ON devices(
	(CASE json_type(reported, '$.connection.state') WHEN 'null' THEN 0 WHEN 'true' THEN 1 WHEN 'false' THEN 1 WHEN 'integer' THEN 2 WHEN 'real' THEN 2 WHEN 'text' THEN 3 WHEN 'array' THEN 4 WHEN 'object' THEN 5 END),
	json_extract(reported, '$.connection.state'));
CREATE INDEX IF NOT EXISTS devices_reported_firmware_status_group ON devices(
	(CASE json_type(reported, '$.firmware.status') WHEN 'null' THEN 0 WHEN 'true' THEN 1 WHEN 'false' THEN 1 WHEN 'integer' THEN 2 WHEN 'real' THEN 2 WHEN 'text' THEN 3 WHEN 'array' THEN 4 WHEN 'object' THEN 5 END),
	json_extract(reported, '$.firmware.status'));

-- Jobs v2 (localhub/jobs): scheduled twin updates and direct method calls
-- over a query condition. The device set is snapshotted into jobs_devices
-- when a job starts, so a restarted hub continues where it was and never
-- re-applies a device whose record is finished.
CREATE TABLE IF NOT EXISTS jobs (
	job_id         TEXT PRIMARY KEY,
	type           TEXT NOT NULL,                   -- scheduleUpdateTwin | scheduleDeviceMethod
	status         TEXT NOT NULL,                   -- queued|scheduled|running|completed|failed|cancelled
	spec           TEXT NOT NULL,                   -- JSON: the accepted request (condition, patch or method, rollout, ...)
	created        TEXT NOT NULL,
	start_time     TEXT NOT NULL,                   -- when the job may start (the request's startTime or its creation)
	end_time       TEXT NOT NULL DEFAULT '0001-01-01T00:00:00Z',
	snapshot       INTEGER NOT NULL DEFAULT 0,      -- 1 once jobs_devices holds the job's device set
	failure_reason TEXT NOT NULL DEFAULT '',
	status_message TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs(status, created);

CREATE TABLE IF NOT EXISTS jobs_devices (
	job_id       TEXT NOT NULL REFERENCES jobs(job_id) ON DELETE CASCADE,
	device_id    TEXT NOT NULL,
	status       TEXT NOT NULL DEFAULT 'pending',  -- pending|running|completed|failed|cancelled
	attempts     INTEGER NOT NULL DEFAULT 0,
	outcome      TEXT NOT NULL DEFAULT '{"deviceMethodResponse":null}',
	error        TEXT NOT NULL DEFAULT 'null',      -- JSON {"code","description"} or null
	created      TEXT NOT NULL,
	start_time   TEXT NOT NULL DEFAULT '0001-01-01T00:00:00Z',
	end_time     TEXT NOT NULL DEFAULT '0001-01-01T00:00:00Z',
	last_updated TEXT NOT NULL,
	PRIMARY KEY (job_id, device_id)
);
CREATE INDEX IF NOT EXISTS jobs_devices_by_device ON jobs_devices(device_id, job_id);
CREATE INDEX IF NOT EXISTS jobs_devices_by_status ON jobs_devices(job_id, status, device_id);

-- Firmware images (issue 10). The bytes are files named by their SHA-256
-- under the hub's data directory (localhub/images); this table holds one row
-- per update id with the signed manifest as uploaded. Two updates with the
-- same bytes share one file.
CREATE TABLE IF NOT EXISTS firmware_images (
	provider  TEXT NOT NULL,
	name      TEXT NOT NULL,
	version   TEXT NOT NULL,
	sha256    TEXT NOT NULL,
	size      INTEGER NOT NULL,
	key_id    TEXT NOT NULL,                   -- the signing key's id
	manifest  TEXT NOT NULL,                   -- the signed manifest document (JSON)
	created   TEXT NOT NULL,                   -- the manifest's createdAt
	uploaded  TEXT NOT NULL,
	PRIMARY KEY (provider, name, version)
);
CREATE INDEX IF NOT EXISTS firmware_images_by_sha256 ON firmware_images(sha256);
