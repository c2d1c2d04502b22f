package main

// cmd_batch.go: "psbase batch", several operations read from stdin as JSON
// lines and applied in one transaction, all or nothing.
//
// May touch: the store named on the command line (one write transaction).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/psbase/psbase"
	"github.com/spf13/cobra"
)

// batchOp is one line of batch input. Which keys an op takes is checked by
// check; unknown keys are refused when the line is decoded.
type batchOp struct {
	Op        string         `json:"op"`
	ID        uint64         `json:"id"`
	IDs       []uint64       `json:"ids"`
	Values    map[string]any `json:"values"`
	IfVersion *uint64        `json:"if_version"`
	Key       string         `json:"key"`
	Field     string         `json:"field"`
	Delta     *json.Number   `json:"delta"`
	Where     []string       `json:"where"`

	line int
}

const batchHelp = `One operation per line, a JSON object with "op" (blank lines are skipped):
  {"op":"insert","values":{"name":"a","runs":1}}          prints the new ID
  {"op":"insert","id":7,"values":{...}}                    under ID 7 (refused if used)
  {"op":"update","id":7,"values":{"runs":2}}               optional "if_version":3
  {"op":"update","where":["runs>=5"],"values":{...}}       every match
  {"op":"upsert","key":"name","values":{"name":"a",...}}   key: a unique field
  {"op":"incr","id":7,"field":"runs","delta":-1}           delta defaults to 1
  {"op":"delete","id":7}  {"op":"delete","ids":[7,8]}  {"op":"delete","where":["runs<1"]}
"values" are JSON values as import reads them (strings are parsed by the
field's type, null is null); "where" holds filters as the command line
writes them ('runs>=5', 'name^=a', 'x is null').`

// check refuses keys that mean nothing to the op, and missing ones.
func (o *batchOp) check() error {
	has := map[string]bool{
		"id": o.ID != 0, "ids": o.IDs != nil, "values": o.Values != nil, "if_version": o.IfVersion != nil,
		"key": o.Key != "", "field": o.Field != "", "delta": o.Delta != nil, "where": o.Where != nil,
	}
	allowed := map[string][]string{
		"insert": {"id", "values"},
		"update": {"id", "where", "values", "if_version"},
		"upsert": {"key", "values"},
		"incr":   {"id", "field", "delta"},
		"delete": {"id", "ids", "where"},
	}
	ok, known := allowed[o.Op]
	if !known {
		return usagef("unknown op %q (want insert, update, upsert, incr or delete)", o.Op)
	}
	for k, set := range has {
		if set && !strings.Contains(" "+strings.Join(ok, " ")+" ", " "+k+" ") {
			return usagef("%s takes no %q", o.Op, k)
		}
	}
	switch o.Op {
	case "insert", "upsert":
		if o.Values == nil {
			return usagef("%s needs \"values\"", o.Op)
		}
		if o.Op == "upsert" && o.Key == "" {
			return usagef("upsert needs \"key\"")
		}
	case "update":
		if o.Values == nil || (o.ID == 0) == (o.Where == nil) {
			return usagef("update needs \"values\" and either \"id\" or \"where\"")
		}
		if o.IfVersion != nil && o.ID == 0 {
			return usagef("\"if_version\" goes with \"id\", not \"where\"")
		}
	case "incr":
		if o.ID == 0 || o.Field == "" {
			return usagef("incr needs \"id\" and \"field\"")
		}
	case "delete":
		n := 0
		for _, set := range []bool{o.ID != 0, o.IDs != nil, o.Where != nil} {
			if set {
				n++
			}
		}
		if n != 1 {
			return usagef("delete needs one of \"id\", \"ids\" or \"where\"")
		}
	}
	return nil
}

// batchResult is what one operation prints.
type batchResult struct {
	id      uint64
	version uint64
	value   any
}

// apply runs the operation in tx.
func (o *batchOp) apply(tx *psbase.Tx, si *schemaIndex) (batchResult, error) {
	vals := func(partial bool) (psbase.Values, error) {
		out := make(psbase.Values, len(o.Values))
		for k, v := range o.Values {
			f, err := si.field(k)
			if err != nil {
				return nil, err
			}
			if out[k], err = convertJSON(f, v); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	match := func() ([]uint64, error) {
		filters, err := si.parseFilters(o.Where)
		if err != nil {
			return nil, err
		}
		recs, err := tx.Select(psbase.Query{Where: filters, Fields: []string{}})
		ids := make([]uint64, len(recs))
		for i, r := range recs {
			ids[i] = r.ID
		}
		return ids, err
	}
	switch o.Op {
	case "insert":
		v, err := vals(false)
		if err != nil {
			return batchResult{}, err
		}
		if o.ID != 0 {
			return batchResult{id: o.ID, version: 1}, tx.InsertWithID(o.ID, v)
		}
		id, err := tx.Insert(v)
		return batchResult{id: id, version: 1}, err
	case "update":
		v, err := vals(true)
		if err != nil {
			return batchResult{}, err
		}
		if o.ID == 0 {
			ids, err := match()
			if err != nil {
				return batchResult{}, err
			}
			for _, id := range ids {
				if _, err := tx.UpdateByID(id, v); err != nil {
					return batchResult{}, fmt.Errorf("record %d: %w", id, err)
				}
			}
			return batchResult{value: len(ids)}, nil
		}
		var rec psbase.Record
		if o.IfVersion != nil {
			rec, err = tx.Update(psbase.Record{ID: o.ID, Version: *o.IfVersion}, v)
		} else {
			rec, err = tx.UpdateByID(o.ID, v)
		}
		return batchResult{id: rec.ID, version: rec.Version}, err
	case "upsert":
		if _, err := si.field(o.Key); err != nil {
			return batchResult{}, err
		}
		v, err := vals(false)
		if err != nil {
			return batchResult{}, err
		}
		if _, ok := v[o.Key]; !ok {
			return batchResult{}, usagef("upsert: the values must include the key field %q", o.Key)
		}
		id, inserted, err := tx.Upsert(o.Key, v)
		what := "updated"
		if inserted {
			what = "inserted"
		}
		return batchResult{id: id, value: what}, err
	case "incr":
		f, err := si.field(o.Field)
		if err != nil {
			return batchResult{}, err
		}
		text := "1"
		if o.Delta != nil {
			text = o.Delta.String()
		}
		switch f.Type {
		case psbase.Int:
			d, err := parseText(f, text)
			if err != nil {
				return batchResult{}, usagef("bad delta: %v", err)
			}
			n, err := tx.Add(o.ID, o.Field, d.(int64))
			return batchResult{id: o.ID, value: n}, err
		case psbase.Float:
			d, err := parseText(f, text)
			if err != nil {
				return batchResult{}, usagef("bad delta: %v", err)
			}
			x, err := tx.AddFloat(o.ID, o.Field, d.(float64))
			return batchResult{id: o.ID, value: x}, err
		}
		return batchResult{}, usagef("incr: field %q is %s, not int or float", o.Field, f.Type)
	case "delete":
		ids := o.IDs
		switch {
		case o.ID != 0:
			ids = []uint64{o.ID}
		case o.Where != nil:
			var err error
			if ids, err = match(); err != nil {
				return batchResult{}, err
			}
		}
		if len(ids) == 0 {
			return batchResult{value: 0}, nil
		}
		n, err := tx.Delete(ids...)
		return batchResult{value: n}, err
	}
	return batchResult{}, usagef("unknown op %q", o.Op)
}

// readBatch decodes every line before the store is touched.
func readBatch(r io.Reader) ([]batchOp, error) {
	var ops []batchOp
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
	for lineNo := 1; sc.Scan(); lineNo++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.UseNumber()
		dec.DisallowUnknownFields()
		var o batchOp
		if err := dec.Decode(&o); err != nil || dec.More() {
			if err == nil {
				err = fmt.Errorf("trailing data after the object")
			}
			return nil, usagef("line %d: not a batch operation: %v", lineNo, err)
		}
		if err := o.check(); err != nil {
			return nil, usagef("line %d: %v", lineNo, err)
		}
		o.line = lineNo
		ops = append(ops, o)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading input: %w", err)
	}
	return ops, nil
}

func (a *app) batchCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "batch DB [FILE]",
		Short: "Apply several operations from stdin in one transaction, all or nothing",
		Long: `Read operations (JSON lines) from FILE or stdin and apply them, in order, in
one write transaction: either every operation is applied or, if one fails,
none is, and psbase names the failing line and exits with that error's code
(3 not found, 4 conflict, 5 duplicate, 64 bad input...). Every line is
decoded and checked before the store's lock is taken. On success it prints
one row per operation: line, op, id, version and value (the count of an
update --where or delete, the new value of an incr, inserted/updated for an
upsert).

` + batchHelp,
		Example: `  printf '%s\n' '{"op":"insert","values":{"name":"a"}}' \
    '{"op":"incr","id":1,"field":"runs","delta":-1}' | psbase batch jobs.db
  psbase batch jobs.db ops.jsonl --json`,
		Args: rangeArgs(1, 2, "DB [FILE]"),
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			in := a.stdin
			if len(args) == 2 && args[1] != "-" {
				f, err := os.Open(args[1])
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			ops, err := readBatch(in)
			if err != nil {
				return err
			}
			return a.runBatch(ctx, args[0], ops)
		},
	}
}

func (a *app) runBatch(ctx context.Context, path string, ops []batchOp) error {
	s, err := a.open(ctx, path)
	if err != nil {
		return err
	}
	results := make([]batchResult, len(ops))
	err = s.Txn(ctx, func(tx *psbase.Tx) error {
		si := newSchemaIndex(tx.Schema())
		for i := range ops {
			r, err := ops[i].apply(tx, si)
			if err != nil {
				return fmt.Errorf("line %d (%s): %w; nothing was applied", ops[i].line, ops[i].Op, err)
			}
			results[i] = r
		}
		return nil
	})
	if err != nil {
		return err
	}
	w := a.newRowWriter([]string{"line", "op", "id", "version", "value"})
	for i, r := range results {
		row := []any{ops[i].line, ops[i].Op, nil, nil, r.value}
		if r.id != 0 {
			row[2] = r.id
		}
		if r.version != 0 {
			row[3] = r.version
		}
		if err := w.writeRow(row); err != nil {
			return err
		}
	}
	return w.flush()
}
