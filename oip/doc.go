// Package oip owns the Open Inference Protocol (the KServe v2 protocol): the
// message types, the datatypes, the JSON codec with Triton's binary tensor
// extension, conversion to and from the generated gRPC messages in
// oip/inferencepb, validation of a request against model metadata, the
// comparison of two responses to the same request (for traffic mirroring),
// and the one error type whose kinds map to HTTP status codes and gRPC codes.
//
// Tensor data is held in one canonical form everywhere in infergate: the
// row-major, little-endian bytes at the datatype's native width (BYTES
// elements each carry a 4-byte little-endian length prefix). That is the form
// of gRPC raw contents and of the binary extension, so batching and protocol
// translation are byte copies, and only JSON needs a conversion.
//
// oip imports nothing else of infergate and never does I/O: it has no
// metrics and starts no goroutine.
package oip
