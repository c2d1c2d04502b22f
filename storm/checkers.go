package storm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// CheckError is the "no" of a checker: every anomaly it found.
type CheckError struct {
	Checker   string   // "counter", "set" or "register"
	Anomalies []string // one line each
	// Visualization is the path of porcupine's HTML rendering of an illegal
	// register history, if one was written.
	Visualization []string
}

func (e *CheckError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "storm: %s check failed: %d anomalies", e.Checker, len(e.Anomalies))
	for _, a := range e.Anomalies {
		b.WriteString("\n\t")
		b.WriteString(a)
	}
	for _, v := range e.Visualization {
		fmt.Fprintf(&b, "\n\tvisualization: %s", v)
	}
	return b.String()
}

// canonical re-encodes a JSON value so that equal values compare equal as
// strings (numbers are kept exact, object keys sorted). Empty means null.
func canonical(raw json.RawMessage) string {
	if len(bytes.TrimSpace(raw)) == 0 {
		return "null"
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return string(raw)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func canonicalValue(v any) string {
	if raw, ok := v.(json.RawMessage); ok {
		return canonical(raw)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%#v", v)
	}
	return canonical(b)
}

// CheckCounter checks a counter (Jepsen's bounds): every operation of h is an
// increment whose Input is the (non-negative) amount, or 1 when the input is
// nil. Then the final value read from the system must lie between the sum of
// the acknowledged increments (StatusOK) and the sum of the attempted ones
// (acknowledged plus unknown outcomes; failed increments did not happen).
// Filter h with History.Key when the history holds other operations.
func CheckCounter(h History, final int64) error {
	e := &CheckError{Checker: "counter"}
	var acked, unknown int64
	for _, op := range h {
		d := int64(1)
		if c := canonical(op.Input); c != "null" {
			if err := json.Unmarshal([]byte(c), &d); err != nil || d < 0 {
				e.Anomalies = append(e.Anomalies, fmt.Sprintf("op %d (task %d): input %s is not a non-negative integer", op.ID, op.Task, c))
				continue
			}
		}
		switch op.Status {
		case StatusOK:
			acked += d
		case StatusInfo:
			unknown += d
		}
	}
	if final < acked {
		e.Anomalies = append(e.Anomalies, fmt.Sprintf("lost update: final value %d < %d acknowledged", final, acked))
	}
	if final > acked+unknown {
		e.Anomalies = append(e.Anomalies, fmt.Sprintf("final value %d > %d attempted (%d acknowledged + %d unknown)", final, acked+unknown, acked, unknown))
	}
	if len(e.Anomalies) > 0 {
		return e
	}
	return nil
}

// Record is an element of a set read back from the system under test.
type Record struct {
	ID    any // the identity the system gave the element; nil if it has none
	Value any // what was inserted
}

// CheckSet checks a set (Jepsen's set-full, without timing): every operation
// of h is an insert whose Input is the value (unique across the history, such
// as "task-seq") and whose Output, when acknowledged, is the ID the system
// gave it (or nil). final is the whole set read back afterwards. Then:
// every acknowledged insert is present exactly once (with its ID); failed ones
// are absent; those with unknown outcome are present at most once; nothing is
// present that no operation wrote; no ID appears twice. Every anomaly is
// reported. Values and IDs compare by their JSON encoding.
func CheckSet(h History, final []Record) error {
	e := &CheckError{Checker: "set"}
	present := map[string][]Record{}
	ids := map[string]int{}
	for _, r := range final {
		v := canonicalValue(r.Value)
		present[v] = append(present[v], r)
		if r.ID != nil {
			ids[canonicalValue(r.ID)]++
		}
	}
	written := map[string]bool{}
	for _, op := range h {
		v := canonical(op.Input)
		if written[v] {
			e.Anomalies = append(e.Anomalies, fmt.Sprintf("value %s inserted by several operations: the check needs unique values", v))
		}
		written[v] = true
		recs := present[v]
		where := fmt.Sprintf("(op %d, task %d)", op.ID, op.Task)
		switch op.Status {
		case StatusOK:
			switch {
			case len(recs) == 0:
				e.Anomalies = append(e.Anomalies, fmt.Sprintf("lost: acknowledged insert %s absent %s", v, where))
			case len(recs) > 1:
				e.Anomalies = append(e.Anomalies, fmt.Sprintf("duplicate: acknowledged insert %s present %d times %s", v, len(recs), where))
			}
			if out := canonical(op.Output); out != "null" && len(recs) == 1 && recs[0].ID != nil {
				if got := canonicalValue(recs[0].ID); got != out {
					e.Anomalies = append(e.Anomalies, fmt.Sprintf("insert %s acknowledged with ID %s but present with ID %s %s", v, out, got, where))
				}
			}
		case StatusFail:
			if len(recs) > 0 {
				e.Anomalies = append(e.Anomalies, fmt.Sprintf("failed insert %s present %d times %s", v, len(recs), where))
			}
		case StatusInfo:
			if len(recs) > 1 {
				e.Anomalies = append(e.Anomalies, fmt.Sprintf("duplicate: insert %s with unknown outcome present %d times %s", v, len(recs), where))
			}
		}
	}
	var phantoms []string
	for v, recs := range present {
		if !written[v] {
			phantoms = append(phantoms, fmt.Sprintf("phantom: %s present %d times but never inserted", v, len(recs)))
		}
	}
	sort.Strings(phantoms)
	e.Anomalies = append(e.Anomalies, phantoms...)
	var dupIDs []string
	for id, n := range ids {
		if n > 1 {
			dupIDs = append(dupIDs, fmt.Sprintf("ID %s present %d times", id, n))
		}
	}
	sort.Strings(dupIDs)
	e.Anomalies = append(e.Anomalies, dupIDs...)
	if len(e.Anomalies) > 0 {
		return e
	}
	return nil
}

// RegisterOp is the Input of an operation on a register (see CheckRegister).
// Build it with ReadOp, WriteOp or CASOp.
type RegisterOp struct {
	Op     string `json:"op"` // "read", "write" or "cas"
	Value  any    `json:"value,omitempty"`
	Expect any    `json:"expect,omitempty"`
}

// ReadOp is the input of a register read; complete it with Worker.Ok(id, value read).
func ReadOp() RegisterOp { return RegisterOp{Op: "read"} }

// WriteOp is the input of a register write of v; complete it with Worker.Ok(id, nil).
func WriteOp(v any) RegisterOp { return RegisterOp{Op: "write", Value: v} }

// CASOp is the input of a compare-and-set from expect to v; complete it with
// Worker.Ok(id, swapped), where swapped is a bool.
func CASOp(expect, v any) RegisterOp { return RegisterOp{Op: "cas", Value: v, Expect: expect} }

// RegisterOptions tunes CheckRegister.
type RegisterOptions struct {
	// Initial is the value of every register before the storm (nil: JSON null,
	// which is also what a read of a missing key should report).
	Initial any
	// Timeout bounds the check of each key (default 10 seconds). A check that
	// runs out of time fails: it proved nothing.
	Timeout time.Duration
	// Dir is where porcupine's HTML visualization of an illegal key is
	// written, as <Name>-<key>.html; "" writes none. Result.Dir is a good
	// choice: it is kept when the test fails.
	Dir string
	// Name is the file name stem of visualizations (default "porcupine").
	Name string
}

type regInput struct {
	op, value, expect string
}

type regOutput struct {
	known   bool
	value   string
	swapped bool
}

func registerModel() porcupine.Model {
	nm := porcupine.NondeterministicModel{
		Step: func(state, input, output any) []any {
			s := state.(string)
			in := input.(regInput)
			out := output.(regOutput)
			switch in.op {
			case "read":
				if out.known && out.value == s {
					return []any{s}
				}
				return nil
			case "write":
				return []any{in.value}
			case "cas":
				if !out.known {
					if s == in.expect {
						return []any{in.value, s}
					}
					return []any{s}
				}
				if out.swapped && s == in.expect {
					return []any{in.value}
				}
				if !out.swapped && s != in.expect {
					return []any{s}
				}
				return nil
			}
			return nil
		},
		DescribeOperation: func(input, output any) string {
			in := input.(regInput)
			out := output.(regOutput)
			res := "?"
			switch in.op {
			case "read":
				return "read() -> " + out.value
			case "write":
				return "write(" + in.value + ")"
			case "cas":
				if out.known {
					res = fmt.Sprint(out.swapped)
				}
				return fmt.Sprintf("cas(%s -> %s) -> %s", in.expect, in.value, res)
			}
			return in.op
		},
		DescribeState: func(state any) string { return state.(string) },
	}
	return nm.ToModel()
}

// CheckRegister checks that h is linearizable as a set of registers, one per
// key, with github.com/anishathalye/porcupine. Inputs are RegisterOp values
// (ReadOp, WriteOp, CASOp); a read's Output is the value read, a CAS's Output
// whether it swapped. Failed operations did not happen and are dropped; reads
// with an unknown outcome are dropped; writes and CASes with an unknown
// outcome get an open-ended return (they may take effect at any instant after
// their invoke, or never). Each key is checked without verbose data first;
// only an illegal key is checked again verbosely to write its visualization.
// A timeout (porcupine's Unknown) is a failure.
func CheckRegister(h History, opt RegisterOptions) error {
	if opt.Timeout <= 0 {
		opt.Timeout = 10 * time.Second
	}
	if opt.Name == "" {
		opt.Name = "porcupine"
	}
	initial := canonicalValue(opt.Initial)
	e := &CheckError{Checker: "register"}
	var end int64
	for _, op := range h {
		end = max(end, op.Call, op.Return)
	}
	model := registerModel()
	initModel := model
	initModel.Init = func() any { return []any{initial} }
	for _, key := range h.Keys() {
		var ops []porcupine.Operation
		for _, op := range h.Key(key) {
			var in RegisterOp
			if err := json.Unmarshal(op.Input, &in); err != nil {
				e.Anomalies = append(e.Anomalies, fmt.Sprintf("key %q: op %d: input is not a RegisterOp: %s", key, op.ID, op.Input))
				continue
			}
			ri := regInput{op: in.Op, value: canonicalValue(in.Value), expect: canonicalValue(in.Expect)}
			if ri.op != "read" && ri.op != "write" && ri.op != "cas" {
				e.Anomalies = append(e.Anomalies, fmt.Sprintf("key %q: op %d: unknown register op %q", key, op.ID, in.Op))
				continue
			}
			var ro regOutput
			ret := op.Return
			switch op.Status {
			case StatusFail:
				continue
			case StatusInfo:
				if ri.op == "read" {
					continue
				}
				ret = end + 1
			case StatusOK:
				ro.known = true
				ro.value = canonical(op.Output)
				if ri.op == "cas" {
					if err := json.Unmarshal(op.Output, &ro.swapped); err != nil {
						e.Anomalies = append(e.Anomalies, fmt.Sprintf("key %q: op %d: CAS output %s is not a bool", key, op.ID, op.Output))
						continue
					}
				}
			}
			ops = append(ops, porcupine.Operation{
				ClientId: op.Task,
				Input:    ri,
				Call:     op.Call,
				Output:   ro,
				Return:   ret,
				Metadata: fmt.Sprintf("task %d op %d (%s)", op.Task, op.ID&0xffffffff, op.Status),
			})
		}
		switch porcupine.CheckOperationsTimeout(initModel, ops, opt.Timeout) {
		case porcupine.Ok:
		case porcupine.Unknown:
			e.Anomalies = append(e.Anomalies, fmt.Sprintf("key %q: linearizability check timed out after %v (%d ops): unproven", key, opt.Timeout, len(ops)))
		case porcupine.Illegal:
			e.Anomalies = append(e.Anomalies, fmt.Sprintf("key %q: history of %d ops is not linearizable", key, len(ops)))
			if opt.Dir != "" {
				_, info := porcupine.CheckOperationsVerbose(initModel, ops, opt.Timeout)
				path := filepath.Join(opt.Dir, fmt.Sprintf("%s-%s.html", opt.Name, sanitize(key)))
				if err := os.MkdirAll(opt.Dir, 0o755); err == nil {
					if err := porcupine.VisualizePath(initModel, info, path); err == nil {
						e.Visualization = append(e.Visualization, path)
					} else {
						e.Anomalies = append(e.Anomalies, fmt.Sprintf("key %q: visualization: %v", key, err))
					}
				}
			}
		}
	}
	if len(e.Anomalies) > 0 {
		return e
	}
	return nil
}
