// Package netlimit wraps the net.Listener of a server that faces
// untrusted clients, so that a flood of connections cannot take the
// process down. A Listener
//   - caps the connections open at once: at the cap, Accept takes one more
//     from the kernel and holds it until there is room, so that the
//     clients after it wait in the listen backlog instead of taking file
//     descriptors the process needs for its runtimes and files;
//   - at the cap, makes room for the connection it holds by closing the
//     oldest silent connection, one open for EvictSilentAfter (1s) without
//     sending a byte: a flood of connections that never send a request
//     cannot keep real clients queued behind it until the servers' header
//     timeouts. A connection that has sent a byte (a client whose request
//     is being served, or a kept-alive one between requests) is never
//     evicted, and neither is a silent one while no other waits;
//   - survives accept errors that pass (EMFILE, ENFILE, ENOBUFS,
//     ECONNABORTED and the like) by backing off from 5ms to 1s and
//     retrying, as net/http's Server does, where fasthttp's Server would
//     return the error and stop serving;
//   - closes, on request, every connection it handed out and that is
//     still open (CloseConns), which gives a server's drain a hard end
//     even for connections the server itself would wait on (grpc-go
//     waits for connections still in their HTTP/2 handshake);
//   - closes a connection, on request (Linger), with a lingering close:
//     it half-closes it and discards what the client still sends, within
//     bounds, so that a client still sending a request body that was
//     refused reads the answer rather than a reset.
//
// It reads a connection only in a lingering close, writes none, and times
// none out: the servers own their protocols' timeouts (header, handshake,
// idle). It only watches whether a connection's reads have returned data
// yet.
//
// Metrics, on the registerer given to NewMetrics, labelled by listener:
//   - infergate_listener_open_connections{listener}
//   - infergate_listener_max_connections{listener}
//   - infergate_listener_accept_errors_total{listener}
//   - infergate_listener_full_waits_total{listener}
//   - infergate_listener_evicted_connections_total{listener}
package netlimit
