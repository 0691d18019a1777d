package registry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
)

// State is the lifecycle state of a model or a version: LIVE, or ARCHIVED
// (kept, listed on request, never resolved or deployed).
type State string

// The states.
const (
	StateLive     State = "LIVE"
	StateArchived State = "ARCHIVED"
)

func (s State) valid() bool { return s == StateLive || s == StateArchived }

// Status is a version's registration status, as MLflow names it: PENDING
// while its artifacts are uploaded, then READY (deployable; artifacts,
// digest, metrics and params frozen) or FAILED (with a message).
type Status string

// The statuses.
const (
	StatusPending Status = "PENDING"
	StatusReady   Status = "READY"
	StatusFailed  Status = "FAILED"
)

func (s Status) valid() bool { return s == StatusPending || s == StatusReady || s == StatusFailed }

// RegisteredModel is a named model (Kubeflow Model Registry's
// RegisteredModel, MLflow's registered model). Name is immutable.
type RegisteredModel struct {
	Name        string            `json:"name"`
	Description string            `json:"description,omitempty"`
	Owner       string            `json:"owner,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	State       State             `json:"state"`
	CreateTime  time.Time         `json:"createTime"`
	UpdateTime  time.Time         `json:"updateTime"`
	// ETag is the model's generation, a decimal counter bumped by every
	// change; pass it back as ifMatch to update only what you read.
	ETag string `json:"etag"`
}

// ModelCreate is what CreateModel takes.
type ModelCreate struct {
	Name        string            `json:"name"`
	Description string            `json:"description,omitempty"`
	Owner       string            `json:"owner,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

// ModelUpdate is a partial update: a nil field is left as it is. Labels
// replaces the whole label set when non-nil (an empty, non-nil map clears
// it). State ARCHIVED archives the model (as ArchiveModel, with its
// guard); LIVE restores it.
type ModelUpdate struct {
	Description *string           `json:"description,omitempty"`
	Owner       *string           `json:"owner,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	State       *State            `json:"state,omitempty"`
}

// Source says who or what made a version: Kind is "user" (the default),
// "pipelineRun", "trainJob", "import" or any kind a producer uses; ID and
// Name identify the producer (a run id, a job name); Actor is the person
// or service account behind it.
type Source struct {
	Kind  string `json:"kind"`
	ID    string `json:"id,omitempty"`
	Name  string `json:"name,omitempty"`
	Actor string `json:"actor,omitempty"`
}

// ModelVersion is one version of a registered model. Version is assigned
// by the registry: 1, 2, ... per model, dense, never reused.
//
// Digest is the manifest digest of the version's artifact set (see
// ManifestDigest); it is set when the version becomes READY, and from then
// on Artifacts, Digest, Metrics and Params never change.
type ModelVersion struct {
	Model            string             `json:"model"`
	Version          int64              `json:"version"`
	Author           string             `json:"author,omitempty"`
	Description      string             `json:"description,omitempty"`
	Labels           map[string]string  `json:"labels,omitempty"`
	CustomProperties map[string]Value   `json:"customProperties,omitempty"`
	Metrics          map[string]float64 `json:"metrics,omitempty"`
	Params           map[string]string  `json:"params,omitempty"`
	Status           Status             `json:"status"`
	StatusMessage    string             `json:"statusMessage,omitempty"`
	State            State              `json:"state"`
	Source           Source             `json:"source"`
	Digest           string             `json:"digest,omitempty"`
	Artifacts        []Artifact         `json:"artifacts"`
	// Aliases are the names of the model's aliases that point at this
	// version, sorted.
	Aliases    []string  `json:"aliases,omitempty"`
	CreateTime time.Time `json:"createTime"`
	UpdateTime time.Time `json:"updateTime"`
	ETag       string    `json:"etag"`
}

// Ref returns the version's reference.
func (v *ModelVersion) Ref() VersionRef { return VersionRef{Model: v.Model, Version: v.Version} }

// VersionCreate is what CreateVersion takes. Source.Kind defaults to
// "user" and Source.Actor to the context's actor (WithActor); Author
// defaults to that actor too.
type VersionCreate struct {
	Author           string             `json:"author,omitempty"`
	Description      string             `json:"description,omitempty"`
	Labels           map[string]string  `json:"labels,omitempty"`
	CustomProperties map[string]Value   `json:"customProperties,omitempty"`
	Metrics          map[string]float64 `json:"metrics,omitempty"`
	Params           map[string]string  `json:"params,omitempty"`
	Source           Source             `json:"source"`
}

// VersionUpdate is a partial update: a nil field is left as it is; a
// non-nil map replaces the whole map (an empty one clears it). Metrics and
// Params are refused once the version is READY. State ARCHIVED archives the
// version (as ArchiveVersion, with its guard); LIVE restores it.
type VersionUpdate struct {
	Description      *string            `json:"description,omitempty"`
	Labels           map[string]string  `json:"labels,omitempty"`
	CustomProperties map[string]Value   `json:"customProperties,omitempty"`
	Metrics          map[string]float64 `json:"metrics,omitempty"`
	Params           map[string]string  `json:"params,omitempty"`
	State            *State             `json:"state,omitempty"`
}

// Artifact is one file of a version. Name is a clean relative slash path
// inside the version ("model.onnx", "iris/1/model.onnx").
type Artifact struct {
	Name        string    `json:"name"`
	URI         string    `json:"uri"`
	Digest      string    `json:"digest"`
	Size        int64     `json:"size"`
	Format      string    `json:"format,omitempty"`
	ContentType string    `json:"contentType,omitempty"`
	CreateTime  time.Time `json:"createTime"`
}

// ArtifactUpload describes an artifact being uploaded. Digest ("sha256:"
// and 64 lowercase hex digits) and Size, when set, are checked against the
// bytes received; a mismatch stores nothing. Size -1 or 0 means unknown.
type ArtifactUpload struct {
	Name        string `json:"name"`
	Format      string `json:"format,omitempty"`
	ContentType string `json:"contentType,omitempty"`
	Digest      string `json:"digest,omitempty"`
	Size        int64  `json:"size,omitempty"`
}

// VersionRef names one version of one model.
type VersionRef struct {
	Model   string `json:"model"`
	Version int64  `json:"version"`
}

// String returns "model/version".
func (r VersionRef) String() string { return r.Model + "/" + strconv.FormatInt(r.Version, 10) }

// Alias is a named pointer from a model to one of its versions.
type Alias struct {
	Model      string    `json:"model"`
	Name       string    `json:"name"`
	Version    int64     `json:"version"`
	UpdateTime time.Time `json:"updateTime"`
	Actor      string    `json:"actor,omitempty"`
}

// AliasChange is one entry of an alias's history: a set (From 0), a move,
// or a delete (To 0).
type AliasChange struct {
	ID     int64     `json:"id"`
	Model  string    `json:"model"`
	Alias  string    `json:"alias"`
	From   int64     `json:"from,omitempty"`
	To     int64     `json:"to,omitempty"`
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor,omitempty"`
	Reason string    `json:"reason,omitempty"`
}

// Order is the order of a list by create time.
type Order string

// The orders; "" is OrderAsc.
const (
	OrderAsc  Order = "asc"
	OrderDesc Order = "desc"
)

// ListOptions selects and pages a list. Zero values: PageSize 100 (at most
// 1000), first page, no filter, oldest first.
//
// PageToken is the NextPageToken of the previous page of the same list
// (with the same order); pages are cut by (create time, id), not by offset,
// so items created while a client pages never shift it: it sees every item
// that existed when it started exactly once.
type ListOptions struct {
	PageSize  int
	PageToken string
	// Name keeps the models whose name starts with it (models only).
	Name string
	// Labels keeps the items carrying every one of these labels.
	Labels map[string]string
	// State keeps the items in that state; "" keeps all.
	State State
	// Status keeps the versions with that status (versions only).
	Status Status
	Order  Order
}

// ModelPage is one page of ListModels.
type ModelPage struct {
	Items         []RegisteredModel `json:"items"`
	Size          int               `json:"size"`
	PageSize      int               `json:"pageSize"`
	NextPageToken string            `json:"nextPageToken,omitempty"`
}

// VersionPage is one page of ListVersions.
type VersionPage struct {
	Items         []ModelVersion `json:"items"`
	Size          int            `json:"size"`
	PageSize      int            `json:"pageSize"`
	NextPageToken string         `json:"nextPageToken,omitempty"`
}

// ValueKind says which of its fields a Value holds.
type ValueKind uint8

// The kinds of Value.
const (
	KindString ValueKind = iota + 1
	KindInt
	KindDouble
	KindBool
)

// Value is a typed custom property: a string, an int64, a float64 or a
// bool. Its JSON is Kubeflow Model Registry's: {"stringValue": "x"},
// {"intValue": "3"} (a decimal string, as int64 does not fit a JSON
// number), {"doubleValue": 0.9} or {"boolValue": true}. The zero Value is
// invalid.
type Value struct {
	kind ValueKind
	s    string
	i    int64
	d    float64
	b    bool
}

// StringValue returns a string Value.
func StringValue(s string) Value { return Value{kind: KindString, s: s} }

// IntValue returns an int64 Value.
func IntValue(i int64) Value { return Value{kind: KindInt, i: i} }

// DoubleValue returns a float64 Value (NaN and infinities are refused when
// stored).
func DoubleValue(d float64) Value { return Value{kind: KindDouble, d: d} }

// BoolValue returns a bool Value.
func BoolValue(b bool) Value { return Value{kind: KindBool, b: b} }

// Kind returns the value's kind; 0 for the zero Value.
func (v Value) Kind() ValueKind { return v.kind }

// String returns the string of a string Value, "" otherwise.
func (v Value) String() string { return v.s }

// Int returns the int64 of an int Value, 0 otherwise.
func (v Value) Int() int64 { return v.i }

// Double returns the float64 of a double Value, 0 otherwise.
func (v Value) Double() float64 { return v.d }

// Bool returns the bool of a bool Value, false otherwise.
func (v Value) Bool() bool { return v.b }

// MarshalJSON encodes v as Kubeflow Model Registry does.
func (v Value) MarshalJSON() ([]byte, error) {
	switch v.kind {
	case KindString:
		s, err := json.Marshal(v.s)
		if err != nil {
			return nil, err
		}
		return append(append([]byte(`{"stringValue":`), s...), '}'), nil
	case KindInt:
		return []byte(`{"intValue":"` + strconv.FormatInt(v.i, 10) + `"}`), nil
	case KindDouble:
		if math.IsNaN(v.d) || math.IsInf(v.d, 0) {
			return nil, fmt.Errorf("doubleValue %v has no JSON form", v.d)
		}
		return []byte(`{"doubleValue":` + strconv.FormatFloat(v.d, 'g', -1, 64) + `}`), nil
	case KindBool:
		return []byte(`{"boolValue":` + strconv.FormatBool(v.b) + `}`), nil
	}
	return nil, fmt.Errorf("an empty custom property value has no JSON form")
}

// UnmarshalJSON decodes exactly one of stringValue, intValue (a decimal
// string), doubleValue or boolValue; anything else is an error.
func (v *Value) UnmarshalJSON(data []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("custom property value: want an object such as {\"stringValue\": \"x\"}: %w", err)
	}
	if raw == nil || len(raw) != 1 {
		return fmt.Errorf("custom property value: want exactly one of stringValue, intValue, doubleValue, boolValue; got %s", bytes.TrimSpace(data))
	}
	for k, m := range raw {
		switch k {
		case "stringValue":
			var s string
			if err := json.Unmarshal(m, &s); err != nil {
				return fmt.Errorf("custom property stringValue %s: want a string", m)
			}
			*v = StringValue(s)
		case "intValue":
			var s string
			if err := json.Unmarshal(m, &s); err != nil {
				return fmt.Errorf("custom property intValue %s: want a decimal string such as \"3\"", m)
			}
			i, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return fmt.Errorf("custom property intValue %q: not a 64-bit integer", s)
			}
			*v = IntValue(i)
		case "doubleValue":
			var d float64
			if err := json.Unmarshal(m, &d); err != nil {
				return fmt.Errorf("custom property doubleValue %s: want a number", m)
			}
			*v = DoubleValue(d)
		case "boolValue":
			var b bool
			if err := json.Unmarshal(m, &b); err != nil {
				return fmt.Errorf("custom property boolValue %s: want true or false", m)
			}
			*v = BoolValue(b)
		default:
			return fmt.Errorf("custom property value: unknown field %q (want stringValue, intValue, doubleValue or boolValue)", k)
		}
	}
	return nil
}
