package psbase

// May touch: nothing but its Tx (read-only: the planner).

import (
	"bytes"
	"fmt"
	"slices"
)

// Explain returns how Select would run q.
func (tx *Tx) Explain(q Query) (plan Plan, err error) {
	old, err := tx.enter(false)
	if err != nil {
		return Plan{}, err
	}
	defer tx.exit(old, &err)
	cq, err := compileQuery(tx.sch, q)
	if err != nil {
		return Plan{}, err
	}
	p := tx.planQuery(cq)
	if p == nil {
		switch {
		case cq.ids.set != nil:
			return Plan{Access: "ids"}, nil
		case cq.ids.restricts():
			return Plan{Access: "id-range"}, nil
		}
		return Plan{Access: "scan"}, nil
	}
	return Plan{Index: p.field.Name, Access: p.access, Ordered: p.ordered}, nil
}

// keyRange is a half-open interval [lo, hi) of index keys; nil lo is the
// start of the bucket, nil hi its end.
type keyRange struct{ lo, hi []byte }

// indexPlan is how a query uses an index.
type indexPlan struct {
	field   *fieldDef
	access  string
	ranges  []keyRange // in ascending order
	ordered bool       // the walk yields the query's order
	desc    bool       // walk backwards
}

// planQuery picks at most one index for cq: equality (and is-null) first,
// then in, then a two-sided range, prefix, a one-sided range, and at last,
// for a query that sorts by one indexed field with a limit, a walk of that
// index in order that stops at the limit.
func (tx *Tx) planQuery(cq *compiledQuery) *indexPlan {
	if cq.planned {
		return cq.plan
	}
	cq.planned = true
	if cq.ids.set != nil {
		return nil // looking the IDs up beats any index
	}
	var best *indexPlan
	bestScore := 0
	consider := func(p *indexPlan, score int) {
		if score > bestScore {
			best, bestScore = p, score
		}
	}
	type bound struct {
		key  []byte
		incl bool
	}
	los, his := map[string]bound{}, map[string]bound{}
	for i := range cq.conds {
		c := &cq.conds[i]
		if tx.sch.index(c.f.Name) == nil {
			continue
		}
		f := c.f
		switch c.op {
		case OpEq:
			k := orderKey(nil, f.Type, c.val)
			consider(&indexPlan{field: f, access: "eq", ranges: []keyRange{{k, successor(k)}}}, 50)
		case OpIsNull:
			k := []byte{keyNull}
			consider(&indexPlan{field: f, access: "eq", ranges: []keyRange{{k, successor(k)}}}, 45)
		case OpIn:
			var keys [][]byte
			for _, v := range c.set {
				if v != nil {
					keys = append(keys, orderKey(nil, f.Type, v))
				}
			}
			slices.SortFunc(keys, bytes.Compare)
			keys = slices.CompactFunc(keys, bytes.Equal)
			rs := make([]keyRange, len(keys))
			for j, k := range keys {
				rs[j] = keyRange{k, successor(k)}
			}
			consider(&indexPlan{field: f, access: "in", ranges: rs}, 40)
		case OpPrefix:
			p := prefixKey(c.prefix)
			consider(&indexPlan{field: f, access: "prefix", ranges: []keyRange{{p, successor(p)}}}, 25)
		case OpGt, OpGe:
			k := orderKey(nil, f.Type, c.val)
			b := bound{k, c.op == OpGe}
			if old, ok := los[f.Name]; !ok || bytes.Compare(k, old.key) > 0 {
				los[f.Name] = b
			}
		case OpLt, OpLe:
			k := orderKey(nil, f.Type, c.val)
			b := bound{k, c.op == OpLe}
			if old, ok := his[f.Name]; !ok || bytes.Compare(k, old.key) < 0 {
				his[f.Name] = b
			}
		}
	}
	for _, f := range tx.sch.Fields {
		lo, hasLo := los[f.Name]
		hi, hasHi := his[f.Name]
		if !hasLo && !hasHi {
			continue
		}
		r := keyRange{lo: []byte{keyNonNull}} // ranges never match null
		if hasLo {
			r.lo = lo.key
			if !lo.incl {
				r.lo = successor(lo.key)
			}
		}
		if hasHi {
			r.hi = hi.key
			if hi.incl {
				r.hi = successor(hi.key)
			}
		}
		score := 20
		if hasLo && hasHi {
			score = 30
		}
		fd := tx.sch.Fields[tx.sch.byName[f.Name]]
		consider(&indexPlan{field: &fd, access: "range", ranges: []keyRange{r}}, score)
	}
	if len(cq.order) == 1 && cq.order[0].f != nil && tx.sch.index(cq.order[0].f.Name) != nil {
		of := cq.order[0].f
		desc := cq.order[0].desc
		switch {
		case best != nil && best.field.Name == of.Name && len(best.ranges) == 1:
			best.ordered, best.desc = true, desc
		case best == nil && cq.q.Limit > 0:
			best = &indexPlan{field: of, access: "order", ranges: []keyRange{{}}, ordered: true, desc: desc}
		}
	}
	cq.plan = best
	return best
}

func (tx *Tx) indexOrdered(cq *compiledQuery) bool {
	p := tx.planQuery(cq)
	return p != nil && p.ordered
}

// Plan says how a query runs.
type Plan struct {
	// Index is the indexed field used, "" for a full scan of the records.
	Index string
	// Access is "scan" (every record), "ids" (looking up the IDs of an
	// id filter), "id-range" (the records between the bounds of id filters
	// or Query.After), "eq", "in", "range", "prefix" (index lookups), or
	// "order" (walking the index in sort order, stopping at the limit).
	Access string
	// Ordered is true when the index also yields the requested order, so no
	// sort is needed and a Limit stops the walk early.
	Ordered bool
}

func (p Plan) String() string {
	if p.Index == "" {
		switch p.Access {
		case "ids":
			return "ID lookups"
		case "id-range":
			return "records in an ID range"
		}
		return "full scan"
	}
	s := fmt.Sprintf("index %s (%s)", p.Index, p.Access)
	if p.Ordered {
		s += ", in index order"
	}
	return s
}
