// Package pipelines owns infergate's pipeline engine: pipelines written as
// YAML (a DAG of steps with typed parameters, data passing, conditions,
// retries, timeouts, parallelFor with fan-in, finally steps and caching),
// validated whole before a run, executed as local processes, and kept in
// the registry's store so that a control plane killed mid-run resumes its
// runs when it starts again. It is Kubeflow Pipelines in small: one Go
// package, no cluster, no Argo.
//
// # The YAML
//
//	apiVersion: infergate.io/v1alpha1
//	kind: Pipeline
//	metadata:
//	  name: train-and-check            # a DNS label; run ids start with it
//	spec:
//	  params:                          # name: {type, default, description}
//	    epochs: {type: int, default: 10}
//	    threshold: {type: double, default: 0.9}
//	    rates: {type: list, default: [0.1, 0.01]}
//	    data: {type: string}           # no default: required at submit
//	  steps:
//	    - name: train                  # lowercase letters, digits, '_', '-'
//	      parallelFor:                 # once per item
//	        items: params.rates        # or steps.S.outputs.LIST, or a literal list
//	        parallelism: 2             # iterations at once (0: the run's bound)
//	      command: [sh, -c, 'train --lr {{.Item}} --epochs {{.Params.epochs}} --data {{.Inputs.data}} --out {{.Outputs.model}} > {{.Outputs.loss}}']
//	      inputs:
//	        data: {file: '{{.Params.data}}'}          # a local file or directory, as an artifact
//	      outputs:
//	        params: {loss: {type: double}}
//	        artifacts: [model]
//	      retry: {limit: 2, backoff: 5s, factor: 2, maxBackoff: 1m}
//	      timeout: 10m
//	    - name: pick
//	      command: [sh, -c, 'pick {{.Inputs.losses}} {{.Inputs.models}} ...']
//	      inputs:
//	        losses: {from: steps.train.outputs.loss}   # fan-in: the list of the iterations' losses
//	        models: {from: steps.train.outputs.model}  # fan-in: the list of their model paths
//	      outputs:
//	        artifacts: [model, metrics]
//	        params:                    # read from the JSON object the step writes as metrics
//	          accuracy: {type: double, artifact: metrics, key: validation_accuracy}
//	    - name: register
//	      when: steps.pick.outputs.accuracy >= params.threshold
//	      command: [./register.sh, '{{.Inputs.model}}']   # relative to the pipeline file
//	      inputs:
//	        model: {from: steps.pick.outputs.model, type: artifact}
//	      cache: false
//	  finally:                         # run once the steps have ended, whatever happened
//	    - name: notify
//	      command: [sh, -c, 'echo run {{.RunID}} {{.Status}}']
//
// A step's fields: name; command (program and arguments, each a
// text/template); env (name: value, values templated; INFERGATE_ names are
// reserved); inputs (name: exactly one of {from: REF}, {value: LITERAL},
// {file: PATH}; optional type: string, int, double, bool, list or artifact,
// checked against the source); outputs (params: name: {type} written to
// outputs/params/NAME, or {type, artifact, key} read from a JSON object the
// step writes as one of its artifacts, dots in key going down nested
// objects; artifacts: [names]); dependsOn (steps to wait for without data); when (a
// condition); retry {limit (0-100), backoff (1s), factor (2), maxBackoff
// (1m)}; timeout (per attempt; none by default); parallelFor {items,
// parallelism}; cache (false: never reuse or offer this step's outputs).
//
// References (REF) are params.NAME, steps.STEP.outputs.NAME and, in a
// parallelFor step, item. An output of a parallelFor step read by another
// step is the list of its iterations' values in item order (a fan-in; for
// an artifact, the list of their paths). A step depends on the steps its
// inputs, condition and items read, and on its dependsOn.
//
// Templates see .Params.NAME, .Inputs.NAME (a value, an artifact's path, a
// fan-in's JSON list), .Outputs.NAME (the file the step writes the output
// to), .OutputDir, .StepDir, .RunID, .Attempt, and in a parallelFor step
// .Item (fields of an object item as .Item.lr) and .Iteration, and in a
// finally step .Status (succeeded, failed or cancelled: how the steps
// ended). Strings print as they are, numbers in Go's shortest form, lists
// and objects as JSON.
//
// Conditions (when) are a small language: literals (numbers, "strings" or
// 'strings', true, false), references (params.NAME, steps.STEP.outputs.NAME,
// and run.status in finally steps), == != < <= > >= && || ! and
// parentheses. Types are checked before a run: comparisons take two
// numbers (an int and a double compare as numbers), two strings, or (==,
// !=) two bools; the whole must be a bool. A false condition skips the
// step and every step that depends on it.
//
// Parse and Validate check the whole pipeline before any run: strict
// decoding (an unknown field or a duplicate key is an error), names,
// duplicate steps, unknown references (with a suggestion for a typo),
// type mismatches (a parameter's default, an input's declared type, a
// condition's operands, parallelFor items that are not a list), bad
// templates (unknown fields, .Item outside parallelFor, .Status outside
// finally), bad conditions, bounds, and dependency cycles. Every problem
// is an *Error naming the step and the field, all reported at once (up
// to 20):
//
//	pipeline.yaml: step eval: inputs.model.from: no step trian (did you mean train?)
//	pipeline.yaml: step b: inputs.x.from: dependency cycle: b → a → b
//
// Parameters are given at submit as text: a string as it is, an int,
// double or bool as Go parses it, a list as a JSON array. An unknown
// parameter, a missing one without a default and a malformed value are
// errors naming it.
//
// # The file contract
//
// Each attempt of a step (of an iteration) runs in its own directory,
// <DataDir>/runs/<run>/<step>[/<iteration>]/attempt-<n>/, its working
// directory, which holds:
//
//	inputs.json             what the step gets (below)
//	outputs/params/NAME     the step writes each output parameter's value here
//	outputs/artifacts/NAME  and each artifact, a file or a directory
//	log                     the process's stdout and stderr, and the engine's lines ("infergate: ...")
//	pid                     the process group id, for recovery
//
// inputs.json is, in the spirit of KFP's ExecutorInput:
//
//	{"run": "...", "pipeline": "...", "step": "...", "attempt": 1,
//	 "iteration": 0, "item": ...,                         (parallelFor steps)
//	 "runStatus": "failed", "steps": {"train": "failed"}, (finally steps)
//	 "inputs": {"parameters": {"lr": 0.1},
//	            "artifacts": {"data": {"path": "...", "digest": "sha256:...", "size": 1234, "run": "...", "step": "...", "iteration": -1}}},
//	 "outputs": {"dir": ".../outputs",
//	             "parameters": {"accuracy": {"type": "double", "path": ".../outputs/params/accuracy"}},
//	             "artifacts": {"model": {"path": ".../outputs/artifacts/model"}}}}
//
// A fan-in artifact input is a list of such objects; an output parameter
// read from an artifact shows its artifact and key instead of a path. The process also gets
// INFERGATE_RUN_ID, INFERGATE_PIPELINE, INFERGATE_STEP, INFERGATE_ATTEMPT,
// INFERGATE_STEP_DIR, INFERGATE_INPUTS (inputs.json's path),
// INFERGATE_OUTPUTS (the outputs directory), INFERGATE_ITERATION and
// INFERGATE_ITEM (parallelFor), INFERGATE_RUN_STATUS (finally), on top of
// Options.Env (the engine's environment by default) and the step's env.
//
// A parameter file holds the value as text (an int, double or bool as Go
// parses it, surrounding white space ignored; a string as it is, one
// trailing newline dropped; a list as a JSON array), at most
// MaxParamBytes; a parameter declared with artifact and key is the value
// at that key of the JSON object in that artifact (a file of at most
// MaxJSONArtifactBytes): built-in steps write their metrics that way.
// After the process exits 0, every declared output must exist and parse
// to its type: a missing or malformed one fails the
// attempt with a message naming it. Artifacts stay where the step wrote
// them (downstream steps read them there), recorded with their sha256
// digest (a directory's is the registry's manifest digest of its files)
// and their lineage: the run, step and iteration that made them. Once
// checked, each is also put into the registry's content-addressed store
// (Registry.PutBlob) with that lineage and the attempt: a file as one
// blob; a directory as one blob per file, named "<artifact>/<path>", and
// its manifest (registry.Manifest), a blob whose digest is the
// directory's. Registry.BlobLineage(digest) then names the run and step
// that made the content. A file changed after the check, or a store
// failure (a full disk, MaxArtifactBytes), fails the attempt naming the
// output.
//
// A command whose first word is "infergate" runs Options.Infergate: a
// built-in step (train, evaluate, register, ...) is just a command that
// follows this contract. A first word holding a '/' is relative to the
// pipeline's BaseDir (the file's directory); other names are looked up in
// PATH.
//
// Each step runs in a process group of its own; on Cancel, on its timeout
// and at Close the group gets SIGTERM and, after Options.KillGrace,
// SIGKILL, and whatever the process leaves running when it exits is
// killed too.
//
// # States
//
// A run is pending, running, then succeeded, failed or cancelled. A step
// (and each iteration of a parallelFor step) is pending, running, then
// succeeded, failed, cached (its outputs reused), skipped (its condition
// was false, or a step it needs did not succeed, or the run failed before
// it started) or cancelled; an attempt is running, then succeeded, failed
// or cancelled. Every transition is one transaction of the registry's
// store (Registry.Update) over the engine's tables pipeline_runs,
// pipeline_steps and pipeline_attempts, with an event in the registry's
// log: run.submitted, run.started, run.cancelling, run.retried,
// run.succeeded, run.failed, run.cancelled, step.started (an attempt),
// step.retrying, step.succeeded, step.failed, step.cached, step.skipped,
// step.cancelled; each event's detail names the run, the step, the
// iteration and the attempt.
//
// When a step fails (its retries spent) no other step starts: running
// ones finish, pending ones are skipped, then the finally steps run, and
// the run fails naming the step and why. A failed finally step fails the
// run too. A finally step needs only the data it reads: its dependsOn
// steps may have ended any way. A failed attempt (a non-zero exit, a
// timeout, a missing or malformed output, an input file that cannot be
// read, the control plane stopping) is retried after its backoff while the
// step's retry limit allows; the reason says which retry and why, and a
// final failure names the attempts made.
//
// # Caching
//
// A step's cache key is the sha256 of its command and env as rendered
// (paths that change from run to run replaced by the names of the
// variables holding them, artifact inputs by their digests), its input
// parameter values, its input artifacts' digests, its item (parallelFor),
// its declared outputs and, for a finally step, the run's status (not the
// step's name: two steps that run the same command on the same inputs
// share their outputs). Before
// an attempt, a step whose key matches a succeeded step of any run (whose
// artifacts are still there at their size) reuses that step's outputs and
// ends cached, naming where they come from. Caching is off for a step
// with cache: false (it neither reuses nor offers outputs), for a run
// submitted with SubmitOptions.DisableCache and for every run with
// Options.DisableCache (those steps still record their keys for later
// runs). A step that reads more than its declared inputs (the clock, the
// network, a file it names itself) should say cache: false.
//
// # Recovery and retry
//
// The store is the only record of a run. Close kills the running steps
// and leaves their attempts running in the store; after a crash or a
// SIGKILL the same holds. Recover, at the next start, resumes every run
// the store holds as pending or running: each attempt found running is
// failed with the reason "the control plane stopped during the attempt",
// what is left of its process group is killed (on Linux: the group's
// processes that carry the attempt's INFERGATE_STEP_DIR), it is retried
// per its step's retry policy, and the run continues where it was (a
// retry that was waiting for its backoff starts at once). Retry
// runs again what did not succeed in a failed or cancelled run (its
// failed, cancelled and skipped steps, with a fresh retry budget, and its
// finally steps), reusing the outputs of the steps that succeeded; the
// attempts are numbered on from the earlier ones.
//
// One engine executes the runs of a store: with PostgreSQL shared by
// several control-plane processes, run the engine in one of them.
//
// # What it never does
//
// It imports no infergate package but registry,
// serves no HTTP (pipelinesapi does), and starts goroutines only for the
// runs it executes (Submit, Retry, Recover), which Close stops and waits
// for. It puts step artifacts into the registry's content-addressed store
// but adds none to a model version: a register step does that.
//
// # Metrics
//
// On Options.Registerer:
//
//	infergate_pipelines_runs_total{state}                    runs that ended, by state
//	infergate_pipelines_steps_total{state}                   steps and iterations that ended, by state
//	infergate_pipelines_step_attempts_total{result}          attempts by result: succeeded, failed, timeout, cancelled
//	infergate_pipelines_running_steps                        step processes running now
//	infergate_pipelines_step_attempt_duration_seconds        how long step processes ran
package pipelines
