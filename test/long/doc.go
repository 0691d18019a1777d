//go:build long

// Package long is infergate's long-running robustness suite, `make
// test-long`: proof that nothing is lost. It builds the infergate binary
// once (internal/testbin), runs the real `infergate serve` on loopback with
// real runtime processes (the built-in model server, or a fake runtime
// that is this test binary started again), and drives it with a load of
// its own while it breaks things: replica kills, hung and unready
// runtimes, runtimes that answer garbage, config reloads and traffic
// changes every 300 ms, bad reloads, SIGTERM, connection and memory
// floods, and a soak at 70% of measured capacity.
//
// Every request the load sends ends in exactly one of three ways, and the
// suite counts each:
//   - answered: a complete HTTP response or a gRPC status the server sent
//     (counted by status, with the error's reason);
//   - not sent: it never reached the server (the connection was refused,
//     or could not be made), which a client sees as a clean failure;
//   - LOST: it was written to the server and no complete answer came back
//     (the connection broke, the answer was cut short, or nothing came
//     within the request's deadline plus a grace period). LOST must be 0
//     in every case; each case asserts it.
//
// Answers are checked too: a 200 must carry a well-formed OIP response
// (outputs whose data fill their shapes) and an error answer must be OIP's
// {"error": "..."}. Each case prints a table line, and the suite writes a
// markdown summary (LONG_SUMMARY or -summary; by default a file in the
// temporary directory whose path is printed at the end).
//
// The files carry the build tag long, so `go test ./...` and `go vet
// ./...` in `make test` never build them; run one case with, for example,
//
//	go test -tags long -run 'TestLong/kill/min-replicas-3' -v ./test/long
//
// Knobs, by environment: LONG_SOAK (soak duration, default 20m),
// LONG_RATE (requests/s of the fault cases, default 400), LONG_SEED
// (random choices, default from the clock, printed), LONG_FLOOD_CONNS
// (idle connections per port, default 4000), LONG_MEM_BOUND_MB (the
// gateway's allowed RSS growth under the memory flood, default 768),
// LONG_SUMMARY (summary path).
package long
