// Package sweep searches hyperparameters by running trials as processes:
// Katib's job, as the pipelines' built-in `infergate step sweep` runs it on
// one machine.
//
// It owns four things:
//
//   - The search space: double (uniform or log-uniform), int and
//     categorical parameters, parsed from ParseParam's command-line form
//     (lr=double:0.001..0.1:log, hidden=int:4..32,
//     optimizer=categorical:adam|sgd).
//   - The choice of trials (Suggest): Random, from a PCG generator seeded
//     with Options.Seed, or Grid, every combination of the ints' and
//     categoricals' values and GridPoints values of each double. The same
//     options give the same trials in the same order.
//   - Running them (Run): each trial in a directory of its own
//     (Options.Dir/trial-N), at most Parallel at once, started in order.
//     A trial is its Prepare commands then its Command, each a process in a
//     process group of its own, in the sweep's working directory (so
//     relative paths mean what they mean on the sweep's command line),
//     stdout and stderr to trial-N/log. The trial writes its final metrics
//     as a JSON object to trial-N/metrics.json (Options.MetricsFile); the
//     number named Options.Objective in it is the trial's objective. A
//     trial that exits non-zero, times out or writes no such number fails,
//     with the first lines of its output as the reason; a failed trial does
//     not fail the sweep as long as another succeeds.
//   - The median stopping rule (Options.MedianStopAfter), as Katib's
//     medianstop and Google Vizier define it: while a trial runs, the
//     sweep reads its progress, JSON lines appended to
//     trial-N/progress.jsonl (Options.ProgressFile) such as
//     {"epoch": 5, "loss": 0.31, "validation_accuracy": 0.9}, every
//     PollInterval. Once the trial has reported an epoch S at or past
//     MedianStopAfter, it is stopped if its best objective up to S is
//     strictly worse than the median of the completed (succeeded) trials'
//     running averages of the objective up to S, provided at least
//     MedianMinTrials of them reported by S. A stopped trial's process
//     group gets SIGTERM, then SIGKILL after KillGrace, and the trial is
//     recorded as early-stopped with the figures. With Parallel 1 the
//     decisions are deterministic; with more they depend on which trials
//     complete first, as in Katib.
//
// # Templates
//
// Every word of Command and Prepare is a text/template. It sees each
// parameter by name ({{.lr}}, {{.hidden}}: a double in Go's shortest form,
// an int in decimal, a category as it is), {{.TrialDir}} (the trial's
// directory, absolute) and {{.Trial}} (its number, from 1). A parameter
// the space does not have is an error before any trial starts. A pipeline
// renders its own {{ }} templates first: choose other delimiters
// (Options.LeftDelim and RightDelim, for example [[ ]]) for the sweep's.
// A first word "infergate" runs Options.Infergate, the binary the sweep
// runs in, so that `infergate step train ...` trials need no PATH. The
// trial's environment holds INFERGATE_SWEEP_TRIAL and
// INFERGATE_SWEEP_TRIAL_DIR too, for scripts.
//
// A trial that needs an untrained model per trial (a sweep over the hidden
// size) makes it with a Prepare command:
//
//	Prepare: infergate step mlp -inputs 4 -hidden {{.hidden}} -classes 3 -out {{.TrialDir}}/init.onnx
//	Command: infergate step train -model {{.TrialDir}}/init.onnx -data iris.csv -learning-rate {{.lr}}
//	         -out {{.TrialDir}}/model.onnx -metrics {{.TrialDir}}/metrics.json -progress {{.TrialDir}}/progress.jsonl
//
// # Outputs
//
// After the trials, Run writes the Summary (every trial's parameters,
// status, objective, epochs, duration and reason, and the best trial), and
// when a trial succeeded, the best one's parameters to ParamsDir (one file
// per parameter holding its value and a newline: a pipeline's output
// parameter files) and a copy of its directory to BestDir (its model,
// metrics, progress, params.json and log). The best trial is the
// succeeded one with the best objective, the lowest number on a tie. When
// every trial fails, Run's error wraps ErrNoTrialSucceeded and names each
// trial's failure.
//
// # Stopping
//
// When Run's context ends (the sweep step got SIGTERM), the running
// trials are stopped as early-stopped ones are, the rest never start, and
// Run returns once every process group it started is gone. On Linux a
// trial's process also gets SIGKILL from the kernel if the sweep dies
// first.
//
// # What it never does
//
// It imports no infergate package: a trial is any command that follows
// the file contract above, usually `infergate step train`. It has no
// metrics of its own (the pipeline engine measures its steps), does no
// network I/O, and starts goroutines only inside Run (one per running
// trial, and one waiting on its process), all ended when Run returns.
package sweep
