package pipelines

import (
	"encoding/json"
	"fmt"
	"time"
)

// APIVersion and Kind are what a pipeline document declares.
const (
	APIVersion = "infergate.io/v1alpha1"
	Kind       = "Pipeline"
)

// Type is the type of a parameter, an input or an output parameter.
type Type string

// The parameter types. A list holds any JSON values (numbers, strings,
// booleans, lists, objects).
const (
	TypeString Type = "string"
	TypeInt    Type = "int"
	TypeDouble Type = "double"
	TypeBool   Type = "bool"
	TypeList   Type = "list"
	// TypeArtifact is the type of an input that is an artifact (a path);
	// only inputs declare it.
	TypeArtifact Type = "artifact"
)

func (t Type) param() bool {
	switch t {
	case TypeString, TypeInt, TypeDouble, TypeBool, TypeList:
		return true
	}
	return false
}

// Pipeline is a parsed pipeline document (see the package documentation
// for the YAML). Parse returns it validated; a Pipeline built in Go must
// be passed to Validate before Engine.Submit takes it (Submit validates
// it again).
type Pipeline struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Metadata   Metadata `json:"metadata"`
	Spec       Spec     `json:"spec"`
	// BaseDir is the directory that relative paths resolve against: `file`
	// inputs and a command's first word when it holds a '/'. ParseFile
	// sets it to the file's directory; "" is the engine's working
	// directory. It is not part of the YAML.
	BaseDir string `json:"-"`
	// Source names the pipeline in errors (a file name); not in the YAML.
	Source string `json:"-"`

	c *compiled // set by Validate
}

// Metadata names the pipeline.
type Metadata struct {
	// Name is a DNS label (1-63 lowercase letters, digits and '-'); run
	// ids start with it.
	Name        string            `json:"name"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Spec is the pipeline's parameters and steps.
type Spec struct {
	// Params are the run's parameters by name.
	Params map[string]ParamSpec `json:"params,omitempty"`
	// Steps form a DAG by their dependencies (dependsOn, inputs from
	// other steps, the steps a when condition or parallelFor items name).
	Steps []Step `json:"steps"`
	// Finally steps run once every step has ended, whatever happened; they
	// may depend on steps and on each other.
	Finally []Step `json:"finally,omitempty"`
}

// ParamSpec declares a parameter. A parameter without a default must be
// given at submit.
type ParamSpec struct {
	Type        Type   `json:"type"`
	Default     any    `json:"default,omitempty"`
	Description string `json:"description,omitempty"`
}

// Step is one step: a command run as a local process, with its inputs and
// declared outputs.
type Step struct {
	Name string `json:"name"`
	// Command is the program and its arguments, each a text/template (see
	// the package documentation). A first word "infergate" runs
	// Options.Infergate.
	Command []string `json:"command"`
	// Env are environment variables of the process, values templated like
	// the command; they are part of the cache key.
	Env map[string]string `json:"env,omitempty"`
	// Inputs by name.
	Inputs map[string]Input `json:"inputs,omitempty"`
	// Outputs the step must write.
	Outputs StepOutputs `json:"outputs,omitzero"`
	// DependsOn orders the step after others without passing data.
	DependsOn []string `json:"dependsOn,omitempty"`
	// When is a condition; false skips the step and the steps that depend
	// on it.
	When string `json:"when,omitempty"`
	// Retry is the retry policy; nil runs the step once.
	Retry *RetryPolicy `json:"retry,omitempty"`
	// Timeout bounds each attempt; 0 is none.
	Timeout Duration `json:"timeout,omitempty"`
	// ParallelFor runs the step once per item.
	ParallelFor *ParallelFor `json:"parallelFor,omitempty"`
	// Cache false never reuses or offers this step's outputs; nil is true.
	Cache *bool `json:"cache,omitempty"`
}

// Input is where one input of a step comes from: exactly one of From,
// Value and File.
type Input struct {
	// From is params.NAME, steps.STEP.outputs.NAME or item (the
	// parallelFor iteration's item).
	From string `json:"from,omitempty"`
	// Value is a literal (a string, number, boolean or list).
	Value any `json:"value,omitempty"`
	// File is a local file or directory given as an artifact input (its
	// digest is part of the cache key); relative to Pipeline.BaseDir. It
	// may use {{.Params.x}}.
	File string `json:"file,omitempty"`
	// Type, when set, must match the source's type (an int source may feed
	// a double input).
	Type Type `json:"type,omitempty"`
}

// StepOutputs declares what a step writes under its outputs directory.
type StepOutputs struct {
	// Params are written to outputs/params/NAME, a file holding the value.
	Params map[string]OutputParam `json:"params,omitempty"`
	// Artifacts are written to outputs/artifacts/NAME, a file or a
	// directory.
	Artifacts []string `json:"artifacts,omitempty"`
}

// OutputParam declares an output parameter: its type, and where the step
// writes it: outputs/params/NAME, or, with Artifact, a value in a JSON
// artifact the step writes (metrics.json's accuracy, say).
type OutputParam struct {
	Type Type `json:"type"`
	// Artifact names one of the step's output artifacts, a JSON object in
	// a file, that holds the value at Key.
	Artifact string `json:"artifact,omitempty"`
	// Key is the value's key in that object; dots go down nested objects
	// (validation.accuracy).
	Key string `json:"key,omitempty"`
}

// RetryPolicy retries a failed attempt (a non-zero exit, a timeout, a
// missing or malformed output, the control plane stopping during it)
// after an exponential backoff: Backoff * Factor^(n-1) before retry n,
// at most MaxBackoff.
type RetryPolicy struct {
	// Limit is the number of retries (0-100).
	Limit int `json:"limit"`
	// Backoff is the first wait; 0 means 1s.
	Backoff Duration `json:"backoff,omitempty"`
	// Factor multiplies the wait at each retry (at least 1); 0 means 2.
	Factor float64 `json:"factor,omitempty"`
	// MaxBackoff caps the wait; 0 means 1m.
	MaxBackoff Duration `json:"maxBackoff,omitempty"`
}

// ParallelFor runs a step once per item of a list.
type ParallelFor struct {
	// Items is a reference to a list (params.NAME, steps.STEP.outputs.NAME)
	// as a string, or a literal list.
	Items any `json:"items"`
	// Parallelism bounds the iterations running at once; 0 is no bound
	// but the run's.
	Parallelism int `json:"parallelism,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("1m30s").
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration such as \"30s\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// RunID names a run: the pipeline's name, '-' and a random suffix.
type RunID string

// RunState is a run's state.
type RunState string

// The run states. A run is pending until its executor starts it, running
// until every step (and finally step) has ended.
const (
	RunPending   RunState = "pending"
	RunRunning   RunState = "running"
	RunSucceeded RunState = "succeeded"
	RunFailed    RunState = "failed"
	RunCancelled RunState = "cancelled"
)

// Final reports whether the run has ended.
func (s RunState) Final() bool {
	return s == RunSucceeded || s == RunFailed || s == RunCancelled
}

// StepState is the state of a step, an iteration or an attempt.
type StepState string

// The step states. An attempt is running, succeeded, failed or
// cancelled.
const (
	StepPending   StepState = "pending"
	StepRunning   StepState = "running"
	StepSucceeded StepState = "succeeded"
	StepFailed    StepState = "failed"
	StepCached    StepState = "cached"
	StepSkipped   StepState = "skipped"
	StepCancelled StepState = "cancelled"
)

// Final reports whether the step has ended.
func (s StepState) Final() bool {
	return s != StepPending && s != StepRunning
}

// ok reports a step whose outputs are there.
func (s StepState) ok() bool { return s == StepSucceeded || s == StepCached }

// Run is a run as stored: its state and its steps'.
type Run struct {
	ID       RunID    `json:"id"`
	Pipeline string   `json:"pipeline"`
	State    RunState `json:"state"`
	// Reason says why the run ended as it did (the failed step and why),
	// or that a cancel is under way.
	Reason string `json:"reason,omitempty"`
	// Params are the run's parameters, defaults applied.
	Params map[string]any `json:"params"`
	// DisableCache is the run's submit option.
	DisableCache bool `json:"disableCache,omitempty"`
	// Cancelling is set once Cancel was asked and until the run ends.
	Cancelling bool      `json:"cancelling,omitempty"`
	Actor      string    `json:"actor,omitempty"`
	CreateTime time.Time `json:"createTime"`
	StartTime  time.Time `json:"startTime,omitzero"`
	EndTime    time.Time `json:"endTime,omitzero"`
	// Steps are the steps in declaration order, then the finally steps.
	// Only Get fills them in (List leaves them out).
	Steps []StepRun `json:"steps,omitempty"`
}

// StepRun is one step of a run, or one iteration of a parallelFor step.
type StepRun struct {
	Name    string `json:"name"`
	Finally bool   `json:"finally,omitempty"`
	// Iteration is the iteration's index, -1 for a step.
	Iteration int `json:"iteration"`
	// Item is the iteration's item.
	Item   any       `json:"item,omitempty"`
	State  StepState `json:"state"`
	Reason string    `json:"reason,omitempty"`
	// CacheKey is the step's cache key once known; CachedFrom names the
	// run, step (and iteration) whose outputs a cached step reused.
	CacheKey   string    `json:"cacheKey,omitempty"`
	CachedFrom string    `json:"cachedFrom,omitempty"`
	Outputs    Outputs   `json:"outputs,omitzero"`
	StartTime  time.Time `json:"startTime,omitzero"`
	EndTime    time.Time `json:"endTime,omitzero"`
	Attempts   []Attempt `json:"attempts,omitempty"`
	// Iterations are a parallelFor step's iterations, by index.
	Iterations []StepRun `json:"iterations,omitempty"`
}

// Outputs are a step's outputs. A parallelFor step's Params are lists of
// its iterations' values, in item order; its artifacts are its
// iterations'.
type Outputs struct {
	Params    map[string]any         `json:"params,omitempty"`
	Artifacts map[string]ArtifactRef `json:"artifacts,omitempty"`
}

// ArtifactRef is an artifact a step wrote: where it is, and its digest.
// A file's digest is "sha256:<hex>" of its bytes; a directory's is the
// registry's manifest digest of its regular files (registry.ManifestDigest,
// names relative to the directory); Size is the byte count (of all files).
type ArtifactRef struct {
	Path   string `json:"path"`
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
	Dir    bool   `json:"dir,omitempty"`
	// Run and Step made it (lineage); Iteration is -1 unless a parallelFor
	// iteration did.
	Run       RunID  `json:"run"`
	Step      string `json:"step"`
	Iteration int    `json:"iteration"`
}

// Attempt is one execution of a step's command.
type Attempt struct {
	Number int       `json:"number"`
	State  StepState `json:"state"`
	Reason string    `json:"reason,omitempty"`
	// ExitCode is the process's, -1 when it did not exit by itself (never
	// started, killed by a signal, or still running).
	ExitCode int `json:"exitCode"`
	// Dir is the attempt's working directory (its log is Dir/log).
	Dir string `json:"dir"`
	// StartTime is when the process started (while it runs: when the
	// attempt was stored, just before); EndTime is when it exited
	// (outputs are checked after).
	StartTime time.Time `json:"startTime,omitzero"`
	EndTime   time.Time `json:"endTime,omitzero"`
}
