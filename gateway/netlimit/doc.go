// Package netlimit wraps the net.Listener of a server that faces
// untrusted clients, so that a flood of connections cannot take the
// process down. A Listener
//   - caps the connections open at once: at the cap, Accept waits for one
//     to close before it takes the next from the kernel, so that new
//     clients wait in the listen backlog instead of taking a file
//     descriptor the process needs for its runtimes and files;
//   - survives accept errors that pass (EMFILE, ENFILE, ENOBUFS,
//     ECONNABORTED and the like) by backing off from 5ms to 1s and
//     retrying, as net/http's Server does, where fasthttp's Server would
//     return the error and stop serving;
//   - closes, on request, every connection it handed out and that is
//     still open (CloseConns), which gives a server's drain a hard end
//     even for connections the server itself would wait on (grpc-go
//     waits for connections still in their HTTP/2 handshake).
//
// It never reads or writes a connection and never times one out: the
// servers own their protocols' timeouts (header, handshake, idle).
//
// Metrics, on the registerer given to NewMetrics, labelled by listener:
//   - infergate_listener_open_connections{listener}
//   - infergate_listener_max_connections{listener}
//   - infergate_listener_accept_errors_total{listener}
//   - infergate_listener_full_waits_total{listener}
package netlimit
