// Package payloadlog logs inference payloads the way KServe's inference
// logger does, so that the consumers people already run for KServe (a
// Knative event display, a broker, a Kafka bridge) take infergate's events
// unchanged.
//
// Each logged request yields a request event and, when its answer is a
// success, a response event, sharing one id: CloudEvents 1.0 of type
// org.kubeflow.serving.inference.request or .response, with KServe's
// extensions inferenceservicename, namespace, component and endpoint (here
// the revision). An HTTP sink (http:// or https:// URL) receives each event
// as a binary-mode POST: the attributes in Ce-Specversion, Ce-Type,
// Ce-Source, Ce-Id, Ce-Time, Ce-Inferenceservicename, Ce-Namespace,
// Ce-Component and Ce-Endpoint headers, the payload as the body with its
// own Content-Type. A file sink receives one structured-mode event (JSON)
// per line, the payload inline as "data" when it is JSON, else base64 in
// "data_base64".
//
// Logging is configured per model (SetModels, or ParseAnnotations from
// an InferenceService's annotations): the sink, the mode (request,
// response or all), a sample rate (random, or by a hash of the request's
// id), and redaction paths. A path names JSON values to replace with
// "[REDACTED]" before the event leaves the process:
//
//	parameters.user_id            member user_id of the top-level parameters
//	inputs[name=ssn].data         data of every input tensor named ssn
//	outputs[*].parameters.trace   member trace of every output's parameters
//	inputs[0]                     the whole first input tensor
//
// Segments are member names separated by '.'; each may be followed by
// selectors in brackets: [*] every element, [N] the N-th, [key=value] the
// elements whose member key is value. With redaction configured, a
// payload that is not JSON (the binary tensor extension, say) is dropped
// rather than logged unredacted.
//
// The request path never waits on a sink: Begin decides (a map lookup and
// a random draw, no allocation when the request is not logged), Request
// and Response copy the payload into a pooled event only when it is logged
// and queue it, dropping and counting it when the bounded queue (events
// and bytes) is full. Run's sender goroutines redact and deliver; a
// failed delivery is counted, not retried. When Run's context ends, Log
// drops, and what is queued is delivered within a drain deadline.
//
// payloadlog never decodes a payload on the request path, never retries
// a delivery, and never blocks Log.
//
// Metrics (see Metrics), per model:
//   - infergate_payloadlog_events_sent_total{model}
//   - infergate_payloadlog_events_failed_total{model}
//   - infergate_payloadlog_events_dropped_total{model,reason}, reason
//     queue_full, unredactable or shutdown
//   - infergate_payloadlog_queued_events, infergate_payloadlog_queued_bytes
package payloadlog
