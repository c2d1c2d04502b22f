package storm

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
)

// OpID identifies one operation of a history. It is unique within a loop of a
// storm: the task number is in the high 32 bits, a per-task sequence number in
// the low ones.
type OpID int64

// Task returns the task that invoked the operation.
func (id OpID) Task() int { return int(id >> 32) }

// Status is the outcome of an operation in a [History].
type Status string

const (
	// StatusOK means the operation completed and took effect.
	StatusOK Status = "ok"
	// StatusFail means the operation completed and definitely did not take
	// effect.
	StatusFail Status = "fail"
	// StatusInfo means the outcome is unknown: the operation was invoked but
	// never completed (typically its process was killed). It may or may not
	// have taken effect.
	StatusInfo Status = "info"
)

// event is one line of a task's history file.
type event struct {
	ID    OpID            `json:"id"`
	Type  string          `json:"type"` // "invoke", "ok", "fail"
	Key   string          `json:"key,omitempty"`
	Value json.RawMessage `json:"value,omitempty"`
	Err   string          `json:"err,omitempty"`
	T     int64           `json:"t"`
}

// An Op is one operation of a merged history: an invoke and, unless the
// outcome is unknown, its completion. Times are CLOCK_MONOTONIC nanoseconds,
// comparable across all processes of the machine.
type Op struct {
	ID     OpID
	Task   int
	Key    string
	Input  json.RawMessage // as given to Worker.Invoke
	Output json.RawMessage // as given to Worker.Ok; nil otherwise
	Err    string          // as given to Worker.Fail
	Status Status
	Call   int64 // invoke instant
	Return int64 // completion instant; 0 when Status is StatusInfo
}

// History is a merged history of operations, ordered by invoke instant.
type History []Op

// Key returns the operations on key, in order.
func (h History) Key(key string) History {
	var out History
	for _, op := range h {
		if op.Key == key {
			out = append(out, op)
		}
	}
	return out
}

// Keys returns the distinct keys of h, sorted.
func (h History) Keys() []string {
	seen := map[string]bool{}
	var keys []string
	for _, op := range h {
		if !seen[op.Key] {
			seen[op.Key] = true
			keys = append(keys, op.Key)
		}
	}
	sort.Strings(keys)
	return keys
}

// Count returns the number of operations with status s.
func (h History) Count(s Status) int {
	n := 0
	for _, op := range h {
		if op.Status == s {
			n++
		}
	}
	return n
}

// MaxInFlight returns the largest number of operations that were in flight
// (invoked and not yet completed) at the same instant. Operations with an
// unknown outcome are left out: when they ended is not known.
func (h History) MaxInFlight() int {
	type edge struct {
		t     int64
		delta int
	}
	var edges []edge
	for _, op := range h {
		if op.Status == StatusInfo {
			continue
		}
		edges = append(edges, edge{op.Call, +1}, edge{op.Return, -1})
	}
	// At equal instants count completions first, so that back-to-back
	// operations are not counted as overlapping.
	slices.SortFunc(edges, func(a, b edge) int {
		if a.t != b.t {
			if a.t < b.t {
				return -1
			}
			return 1
		}
		return a.delta - b.delta
	})
	cur, max := 0, 0
	for _, e := range edges {
		cur += e.delta
		if cur > max {
			max = cur
		}
	}
	return max
}

// readHistory reads one task's history file. Lines that do not parse (there
// should be none: each event is one write(2)) are reported in bad.
func readHistory(path string) (events []event, bad int, err error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			bad++
			continue
		}
		events = append(events, e)
	}
	return events, bad, sc.Err()
}

// mergeHistory pairs invokes with completions. Completions without an invoke
// are an error of the caller of Worker.Ok/Fail.
func mergeHistory(events []event) (History, error) {
	byID := map[OpID]*Op{}
	var order []OpID
	for _, e := range events {
		switch e.Type {
		case "invoke":
			if byID[e.ID] != nil {
				return nil, fmt.Errorf("storm: history: op %d invoked twice", e.ID)
			}
			byID[e.ID] = &Op{ID: e.ID, Task: e.ID.Task(), Key: e.Key, Input: e.Value, Status: StatusInfo, Call: e.T}
			order = append(order, e.ID)
		case "ok", "fail":
			op := byID[e.ID]
			if op == nil {
				return nil, fmt.Errorf("storm: history: op %d completed but never invoked", e.ID)
			}
			if op.Status != StatusInfo {
				return nil, fmt.Errorf("storm: history: op %d completed twice", e.ID)
			}
			op.Status = Status(e.Type)
			op.Output = e.Value
			op.Err = e.Err
			op.Return = e.T
		default:
			return nil, fmt.Errorf("storm: history: unknown event type %q", e.Type)
		}
	}
	h := make(History, 0, len(order))
	for _, id := range order {
		h = append(h, *byID[id])
	}
	slices.SortStableFunc(h, func(a, b Op) int {
		switch {
		case a.Call < b.Call:
			return -1
		case a.Call > b.Call:
			return 1
		}
		return 0
	})
	return h, nil
}
