// Package jsonhttp holds the HTTP plumbing that the admin port's JSON APIs
// share (the registry's, the pipelines' and the tenants'), so that they
// answer, refuse and decode alike:
//
//   - HandlerFunc and ErrorWriter: a route returns its error instead of
//     writing it, and one ErrorWriter per API answers it as
//     {"error": "...", "code": "..."} with the status the API's own mapping
//     chooses (the one place each API decides statuses);
//   - Error: an error of the request itself (a wrong method or media type),
//     carrying its status and code past that mapping (StatusOf);
//   - NoRoute: the answer to a path under an API's patterns that no route
//     takes, 405 with Allow when other methods would do, else 404;
//   - Decode: strict decoding of a JSON body (bounded, one value, known
//     fields only), returning what went wrong for the API to word;
//   - Actor: who makes a change, from X-Infergate-Actor or the client's
//     address;
//   - the client's side: BaseURL, NewRequest and Do, which turns an error
//     answer into an *AnswerError for the API's client to map to its own
//     errors.
//
// # What it never does
//
// It imports nothing of infergate, and it chooses no message, status or
// code of an API's own errors: each API keeps its words and its mapping.
// It starts no goroutine and keeps no state.
//
// # Metrics
//
// None.
package jsonhttp
