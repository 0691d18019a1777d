// Package registry owns infergate's model registry: registered models,
// their versions, the versions' artifacts, aliases with their history, the
// record of which deployment uses which version, and the append-only event
// log of every change. It is what `storageUri: registry://...` resolves
// against.
//
// # The model
//
// Entities are named as Kubeflow Model Registry and MLflow name them:
//
//   - RegisteredModel: a name (NameRule, immutable), description, owner,
//     labels, state LIVE or ARCHIVED, and an ETag (a generation counter)
//     for optimistic concurrency: UpdateModel and UpdateVersion take the
//     ETag read as ifMatch and refuse a stale one (CodeFailedPrecondition).
//   - ModelVersion: numbered by the registry per model (1, 2, ...: dense,
//     never reused, whatever the concurrency), with author, description,
//     labels, typed custom properties (Value), metrics and params, a source
//     (user, pipeline run...), a status PENDING, READY or FAILED (with a
//     message, as MLflow's asynchronous registration) and a state LIVE or
//     ARCHIVED (as Kubeflow's). A version is created PENDING; artifacts are
//     added only while it is PENDING; MarkReady (at least one artifact)
//     freezes its artifacts, digest, metrics and params.
//   - Artifact: one file of a version, named by a clean relative slash path
//     ("model.onnx", or "iris/1/model.onnx" for a Triton repository entry),
//     with its sha256 digest, size, format and content type.
//   - Alias: a name (NameRule; "latest" is reserved) pointing at one READY,
//     LIVE version of a model. Every set, move and delete is kept in the
//     alias's history (from, to, time, actor, reason).
//   - Uses: SetUses records which versions a user (a deployment, such as
//     "inferenceservice/iris") uses. A version used by an alias or a user
//     cannot be archived (CodeConflict names them).
//
// A reference (Ref, ParseRef, Resolve) names a version as
// registry://iris (the highest-numbered READY, LIVE version),
// registry://iris/3, registry://iris@prod, or registry://iris@sha256:<hex>
// (by manifest digest). Resolving a missing, not-READY or archived target
// fails with an error that names the reference and why.
//
// Who acts is taken from the context (WithActor) and recorded with every
// change. Errors are *Error values with a Code that the API layer maps to
// an HTTP status in one place (see Code); messages name the entity, the
// field and the value.
//
// # Digests and the manifest rule
//
// An artifact's digest is "sha256:" and the hex SHA-256 of its bytes. A
// version's digest is the digest of its manifest: one line per artifact,
// sorted by name in byte order, each "<digest> <size> <name>\n" (see
// ManifestDigest). Two versions have equal digests exactly when they hold
// the same bytes under the same names. The digest is computed when the
// version becomes READY; Materialize checks it again, and every file's
// digest, when a runtime is given the files.
//
// # Storage layout
//
// Metadata lives in one SQL store (Options.Store): by default the SQLite
// file <DataDir>/infergate.db (modernc.org/sqlite, pure Go: WAL, foreign
// keys, synchronous=FULL, busy timeout, write transactions that take the
// write lock at BEGIN), or a PostgreSQL database (pgx) shared by several
// control-plane processes. Both go through database/sql with the same SQL;
// a small dialect covers the differences (row locks, advisory locks, error
// codes, the id column). The schema is created and migrated by embedded
// migrations (migrations/NNNN_name.sql) at Open, in one transaction,
// recorded in schema_version; a store whose schema is newer than the binary
// is refused. Times are stored in UTC microseconds.
//
// Artifact bytes live outside the database, content-addressed:
//
//	<DataDir>/artifacts/sha256/<hex>   one read-only file per distinct content
//	<DataDir>/artifacts/tmp/           uploads in progress
//
// An upload streams to a temp file while it is hashed (never held in
// memory), is checked against the digest and size the client announced and
// against Options.MaxArtifactBytes, is synced, and is renamed into place
// (content already stored is kept once). Its artifact row is then committed
// in one transaction; if anything fails, neither the row nor the file
// remains. A blob is removed when the last artifact row referencing it is
// replaced, unless it has lineage; temp files left by a crash are removed
// at a later Open. All processes sharing a PostgreSQL store must share
// DataDir.
//
// PutBlob stores content the same way without a model version: the
// artifacts of pipeline steps, each with its lineage (the run, step,
// iteration and attempt that produced it, and its name there) in the
// blob_lineage table and an artifact.produced event, committed together.
// A blob with lineage is never removed. BlobLineage lists a digest's
// lineage, so that a version registered from a run's artifact can name
// the run and step that made it; OpenBlob reads any blob the registry
// knows.
//
// # Concurrency
//
// Every change is one transaction that also appends its events, so a
// change and its event are committed together or not at all. Each change
// to a model, its versions or its aliases first locks the model's row
// (SELECT ... FOR UPDATE on PostgreSQL; SQLite has one writer: this
// process's writes queue in Go, other processes' wait up to BusyTimeout).
// Event appends take a store-wide advisory lock on PostgreSQL, so that event
// ids are committed in increasing order and a reader tailing the log by id
// never misses one. Reads run in a read-only transaction (one snapshot).
// Lists page by (create time, id), not by offset, so that inserts while a
// client pages never shift it.
//
// Subscribe fans this process's committed events out in commit order. A
// slow reader never blocks a writer: past Options.EventBuffer undelivered
// events it loses the newest ones and receives one EventGap event in their
// place, naming the ids to read back with QueryEvents. Update gives the
// control plane a transaction of the same store for its own tables and
// events.
//
// # What it never does
//
// It imports nothing else of infergate, serves no HTTP, and starts no
// goroutine but the one per Subscribe, which ends with its context.
//
// # Metrics
//
// On Options.Registerer:
//
//	infergate_registry_events_dropped_total            events a slow subscriber lost (each behind a gap marker)
//	infergate_registry_artifact_upload_bytes_total     bytes of artifacts stored
//	infergate_registry_artifact_uploads_total{result}  uploads by result: stored, or the error code
//	infergate_registry_artifact_verify_failures_total  artifacts found altered when given to a runtime
package registry
