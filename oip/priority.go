package oip

import (
	"encoding/json"

	"google.golang.org/protobuf/encoding/protowire"
)

// The field numbers PeekPriorityProto reads: ModelInferRequest.parameters
// (a map<string, InferParameter>), a map entry's key and value, and
// InferParameter's int64_param and uint64_param.
const (
	fieldRequestParameters = 4
	fieldMapKey            = 1
	fieldMapValue          = 2
	fieldParamInt64        = 2
	fieldParamUint64       = 5
)

// PeekPriority returns the "priority" parameter of an OIP REST inference
// request body (its JSON, the header part when binary tensors follow: see
// jsonLen), 0 when it has none or the body does not say. It decodes
// only the top-level parameters, for a request about to wait in a queue
// ordered by priority; the request's own decoding reports malformed
// bodies.
func PeekPriority(body []byte, jsonLen int) uint64 {
	if jsonLen > 0 && jsonLen <= len(body) {
		body = body[:jsonLen]
	}
	var req struct {
		Parameters struct {
			Priority json.Number `json:"priority"`
		} `json:"parameters"`
	}
	if json.Unmarshal(body, &req) != nil {
		return 0
	}
	return nonNegative(req.Parameters.Priority)
}

func nonNegative(n json.Number) uint64 {
	if v, err := n.Int64(); err == nil && v > 0 {
		return uint64(v)
	}
	return 0
}

// PeekPriorityProto is PeekPriority for an encoded ModelInferRequest: its
// parameters["priority"], an int64_param or uint64_param, 0 when absent
// or malformed.
func PeekPriorityProto(b []byte) uint64 {
	var prio uint64
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0
		}
		b = b[n:]
		if num == fieldRequestParameters && typ == protowire.BytesType {
			entry, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return 0
			}
			if p, ok := priorityEntry(entry); ok {
				prio = p // the last entry of a key wins, as in a proto map
			}
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return 0
		}
		b = b[n:]
	}
	return prio
}

// priorityEntry reads a parameters map entry: its value when its key is
// "priority".
func priorityEntry(b []byte) (uint64, bool) {
	var (
		key   []byte
		value []byte
	)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, false
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == fieldMapKey || num == fieldMapValue) {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return 0, false
			}
			if num == fieldMapKey {
				key = v
			} else {
				value = v
			}
			b = b[n:]
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return 0, false
		}
		b = b[n:]
	}
	if string(key) != ParamPriority {
		return 0, false
	}
	for len(value) > 0 {
		num, typ, n := protowire.ConsumeTag(value)
		if n < 0 {
			return 0, false
		}
		value = value[n:]
		if typ == protowire.VarintType && (num == fieldParamInt64 || num == fieldParamUint64) {
			v, n := protowire.ConsumeVarint(value)
			if n < 0 {
				return 0, false
			}
			if num == fieldParamInt64 && int64(v) < 0 {
				return 0, true
			}
			return v, true
		}
		if n = protowire.ConsumeFieldValue(num, typ, value); n < 0 {
			return 0, false
		}
		value = value[n:]
	}
	return 0, true
}
