// Package pipelinesapi serves the pipeline engine over HTTP, under
// /api/v1/runs, for `infergate run` and the dashboard:
//
//	POST /api/v1/runs                                  submit: {"pipeline": YAML, "params": {...}, "disableCache": bool, "source": name, "baseDir": dir} → 201 Run
//	GET  /api/v1/runs?pipeline=&state=&pageSize=&pageToken=   runs, newest first (RunPage)
//	GET  /api/v1/runs/{id}                             a run with its steps, iterations and attempts
//	POST /api/v1/runs/{id}/cancel                      ask the run to stop → 202 Run
//	POST /api/v1/runs/{id}/retry                       run again what did not succeed → 202 Run
//	GET  /api/v1/runs/{id}/steps/{step}/logs?follow=1&iteration=N&attempt=N   a step's log as text/plain, streamed while it runs with follow
//
// Parameters are given as strings, as on the command line ("epochs":
// "20"); JSON numbers, booleans and arrays are taken as their text.
// Errors are JSON {"error": "..."}: 400 for a bad pipeline (every problem,
// one per line), parameter or request, 404 for an unknown run, step,
// iteration or attempt, 409 for an action the run's state refuses
// (cancelling an ended run, retrying a running or succeeded one), 413 for
// a body over its bound, 429 past the engine's active runs, 503 when the
// engine is closing. Handlers return their errors, which are written in
// one place (a jsonhttp.ErrorWriter), the status chosen in one (status).
// Changes (the POSTs) go through Options.Guard, as the registry's API
// guards its own (controlplane.Guard: JSON only, no Origin, loopback only
// unless allowed).
//
// A submitted pipeline runs its commands as the engine's user on the
// engine's machine, and its file inputs and baseDir name that machine's
// files: the guard is what keeps that to trusted clients.
//
// It owns nothing but the translation: every decision is the engine's.
package pipelinesapi
