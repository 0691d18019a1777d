-- Lineage of blobs stored without a model version (PutBlob): which pipeline
-- run, step, iteration and attempt produced which content, under which
-- name. A blob with a lineage row is never removed by the artifact store's
-- cleanup of unreferenced blobs. Shared by SQLite and PostgreSQL.

CREATE TABLE blob_lineage (
  id {{id}},
  digest TEXT NOT NULL,
  size BIGINT NOT NULL,
  run TEXT NOT NULL,
  step TEXT NOT NULL,
  iteration BIGINT NOT NULL,
  attempt BIGINT NOT NULL,
  name TEXT NOT NULL,
  actor TEXT NOT NULL DEFAULT '',
  create_time BIGINT NOT NULL,
  UNIQUE (digest, run, step, iteration, attempt, name)
);
CREATE INDEX blob_lineage_run ON blob_lineage (run, step, id);
