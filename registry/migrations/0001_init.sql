-- The registry's first schema. Shared by SQLite and PostgreSQL: {{id}} is
-- the dialect's auto-increment primary key. Times are UTC microseconds since
-- the Unix epoch; JSON columns hold the encoded maps read back as they are.

CREATE TABLE models (
  id {{id}},
  name TEXT NOT NULL UNIQUE,
  description TEXT NOT NULL DEFAULT '',
  owner TEXT NOT NULL DEFAULT '',
  labels TEXT NOT NULL DEFAULT '{}',
  state TEXT NOT NULL CHECK (state IN ('LIVE', 'ARCHIVED')),
  -- next version number: bumped in the registering transaction, never reused
  next_version BIGINT NOT NULL DEFAULT 1,
  create_time BIGINT NOT NULL,
  update_time BIGINT NOT NULL,
  generation BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX models_create ON models (create_time, id);

-- One row per label, so that label filters are plain joins on both stores.
CREATE TABLE model_labels (
  model_id BIGINT NOT NULL REFERENCES models (id) ON DELETE CASCADE,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (model_id, key)
);
CREATE INDEX model_labels_kv ON model_labels (key, value);

CREATE TABLE versions (
  id {{id}},
  model_id BIGINT NOT NULL REFERENCES models (id),
  version BIGINT NOT NULL,
  author TEXT NOT NULL DEFAULT '',
  description TEXT NOT NULL DEFAULT '',
  labels TEXT NOT NULL DEFAULT '{}',
  custom_properties TEXT NOT NULL DEFAULT '{}',
  metrics TEXT NOT NULL DEFAULT '{}',
  params TEXT NOT NULL DEFAULT '{}',
  status TEXT NOT NULL CHECK (status IN ('PENDING', 'READY', 'FAILED')),
  status_message TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL CHECK (state IN ('LIVE', 'ARCHIVED')),
  source_kind TEXT NOT NULL,
  source_id TEXT NOT NULL DEFAULT '',
  source_name TEXT NOT NULL DEFAULT '',
  source_actor TEXT NOT NULL DEFAULT '',
  -- manifest digest of the artifact set, set when the version becomes READY
  digest TEXT NOT NULL DEFAULT '',
  create_time BIGINT NOT NULL,
  update_time BIGINT NOT NULL,
  generation BIGINT NOT NULL DEFAULT 1,
  UNIQUE (model_id, version)
);
CREATE INDEX versions_create ON versions (model_id, create_time, id);
CREATE INDEX versions_digest ON versions (model_id, digest);

CREATE TABLE version_labels (
  version_id BIGINT NOT NULL REFERENCES versions (id) ON DELETE CASCADE,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (version_id, key)
);
CREATE INDEX version_labels_kv ON version_labels (key, value);

CREATE TABLE artifacts (
  id {{id}},
  version_id BIGINT NOT NULL REFERENCES versions (id),
  name TEXT NOT NULL,
  digest TEXT NOT NULL,
  size BIGINT NOT NULL,
  format TEXT NOT NULL DEFAULT '',
  content_type TEXT NOT NULL DEFAULT '',
  create_time BIGINT NOT NULL,
  UNIQUE (version_id, name)
);
CREATE INDEX artifacts_digest ON artifacts (digest);

CREATE TABLE aliases (
  model_id BIGINT NOT NULL REFERENCES models (id),
  name TEXT NOT NULL,
  version_id BIGINT NOT NULL REFERENCES versions (id),
  update_time BIGINT NOT NULL,
  actor TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (model_id, name)
);
CREATE INDEX aliases_version ON aliases (version_id);

CREATE TABLE alias_history (
  id {{id}},
  model_id BIGINT NOT NULL REFERENCES models (id),
  alias TEXT NOT NULL,
  from_version BIGINT NOT NULL DEFAULT 0,
  to_version BIGINT NOT NULL DEFAULT 0,
  time BIGINT NOT NULL,
  actor TEXT NOT NULL DEFAULT '',
  reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX alias_history_alias ON alias_history (model_id, alias, id);

-- Which deployment (or other user) uses which version.
CREATE TABLE uses (
  user_name TEXT NOT NULL,
  version_id BIGINT NOT NULL REFERENCES versions (id),
  PRIMARY KEY (user_name, version_id)
);
CREATE INDEX uses_version ON uses (version_id);

-- The append-only event log. model and version are plain values, not
-- foreign keys: control-plane events may name models the registry lacks.
CREATE TABLE events (
  id {{id}},
  time BIGINT NOT NULL,
  kind TEXT NOT NULL,
  model TEXT NOT NULL DEFAULT '',
  version BIGINT NOT NULL DEFAULT 0,
  actor TEXT NOT NULL DEFAULT '',
  message TEXT NOT NULL DEFAULT '',
  detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_time ON events (time, id);
CREATE INDEX events_model ON events (model, id);
CREATE INDEX events_kind ON events (kind, id);
