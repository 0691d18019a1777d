// Package registryapi serves the model registry and its event log as JSON
// over HTTP, on the admin port beside the control API: what
// `infergate registry ...` and `infergate events` call. It owns the
// mapping of registry errors to HTTP statuses (statusOf, the one place),
// the decoding of request bodies and query parameters, artifact upload and
// download, and the server-sent event stream; and Client, the Go client
// of that API that `infergate registry` and `infergate events` use
// (uploads hashed before they are streamed, and a followed event stream
// that resumes with Last-Event-ID after a drop).
//
// # Routes
//
//	GET    /api/v1/registry/models                                      list models (ListModels)
//	POST   /api/v1/registry/models                                      register a model (ModelCreate): 201
//	GET    /api/v1/registry/models/{model}                              one model
//	PATCH  /api/v1/registry/models/{model}                              update (ModelUpdate), If-Match
//	POST   /api/v1/registry/models/{model}/archive                      archive, If-Match
//	GET    /api/v1/registry/models/{model}/versions                     list versions
//	POST   /api/v1/registry/models/{model}/versions                     register a version (VersionCreate): 201, PENDING
//	GET    /api/v1/registry/models/{model}/versions/{n}                 one version
//	PATCH  /api/v1/registry/models/{model}/versions/{n}                 update (VersionUpdate), If-Match
//	POST   /api/v1/registry/models/{model}/versions/{n}/ready           PENDING -> READY
//	POST   /api/v1/registry/models/{model}/versions/{n}/failed          PENDING -> FAILED ({"message": "..."})
//	POST   /api/v1/registry/models/{model}/versions/{n}/archive         archive, If-Match
//	GET    /api/v1/registry/models/{model}/versions/{n}/artifacts       the version's artifacts
//	PUT    /api/v1/registry/models/{model}/versions/{n}/artifacts/{path...}  upload one artifact (streamed)
//	GET    /api/v1/registry/models/{model}/versions/{n}/artifacts/{path...}  download it
//	GET    /api/v1/registry/models/{model}/aliases                      the model's aliases
//	GET    /api/v1/registry/models/{model}/aliases/{alias}              one alias
//	PUT    /api/v1/registry/models/{model}/aliases/{alias}              set or move ({"version": 3, "reason": "..."})
//	DELETE /api/v1/registry/models/{model}/aliases/{alias}              delete ({"reason": "..."} or ?reason=)
//	GET    /api/v1/registry/models/{model}/aliases/{alias}/history      its moves, newest first
//	GET    /api/v1/registry/resolve?ref=registry://iris@prod            the version a reference names
//	GET    /api/v1/events?since=&model=&kind=&limit=                    the event log, oldest first
//	GET    /api/v1/events/stream?since=&model=&kind=                    the same as server-sent events
//
// Lists take pageSize (1-1000, default 100), pageToken, order=asc|desc (by
// create time), state=LIVE|ARCHIVED, label=k=v (repeatable: every one must
// match), name (a prefix; models) and status (versions), and answer
// {"items": [...], "nextPageToken": "..."}. A query parameter a route does
// not take is an error that names it, as an unknown JSON field is.
//
// # Requests and answers
//
// Bodies are JSON objects (Content-Type application/json, at most
// Options.MaxBodyBytes), decoded strictly: an unknown field is 400 naming
// it; malformed JSON is 400 with the byte offset. Models and versions carry
// an ETag (their generation) in the ETag header and the body; PATCH and
// archive honour If-Match and answer 412 to a stale one. Errors are
// {"error": "...", "code": "NOT_FOUND"} with 400 INVALID_ARGUMENT, 404
// NOT_FOUND, 405 METHOD_NOT_ALLOWED, 409 ALREADY_EXISTS or CONFLICT, 412
// FAILED_PRECONDITION, 413 TOO_LARGE, 415 UNSUPPORTED_MEDIA_TYPE, 503
// UNAVAILABLE, 507 INSUFFICIENT_STORAGE, 500 INTERNAL or DATA_LOSS.
// Every change (POST, PUT, PATCH, DELETE) goes through Options.Guard. The
// actor recorded with a change is the X-Infergate-Actor header (the CLI
// sends the OS user), else the client's address.
//
// An artifact upload streams the request body into the registry (never
// held in memory). A Digest (sha-256=<base64>, RFC 3230), Content-Digest
// (sha-256=:<base64>:, RFC 9530) or X-Content-SHA256 (<hex>) header, and
// Content-Length, are checked against the bytes; a mismatch, a body cut off
// half way (400) or over the limit (413) stores nothing. A download
// carries Content-Length, ETag (the digest) and X-Content-SHA256.
//
// # The event stream
//
// GET /api/v1/events/stream sends each event as "id: <id>" and
// "data: <JSON>" lines, from the event after Last-Event-ID (a reconnecting
// EventSource), else after since (an id or an RFC 3339 time), else from
// the moment of the request. It reads the log itself, woken by the
// registry's Subscribe and every Options.EventPoll (for events other
// processes sharing a PostgreSQL store commit), so a client that falls
// behind loses nothing: it catches up from the store, in id order. A
// comment line is sent every Options.Heartbeat so that proxies and clients
// can tell a quiet stream from a dead one. A stream ends when its client
// goes, when a write to it stalls past Options.StreamWriteTimeout, when
// the store fails (after an "event: error" naming why), or when
// Options.Done is closed.
//
// # Metrics
//
// None of its own: the registry counts uploads and the events a slow
// subscriber lost, and the admin port's listener counts connections.
//
// # What it never does
//
// It imports nothing of infergate but registry and internal/jsonhttp (the
// plumbing the admin port's JSON APIs share), keeps no state of its own
// (every answer comes from the registry), and starts no goroutine but one
// per open event stream when Options.Done is set, which ends with the
// stream. Client starts none: Follow runs on its caller's goroutine.
package registryapi
