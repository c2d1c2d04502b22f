package psbase

// keyset.go: the record ID as a query field ("id" in filters and OrderBy)
// and keyset continuation (Query.After): the conditions on IDs that bound
// the walk of the records bucket, and the "strictly after this record in
// the query's order" test, so that page 1000 costs what page 1 costs.
//
// May touch: nothing (compiled queries in memory).

import (
	"math"
	"slices"
	"strings"
)

// IDField is the name by which filters and OrderBy refer to the record's ID
// (compared without regard to case; no schema field may be called so).
const IDField = "id"

func isIDField(name string) bool {
	return strings.EqualFold(name, IDField) || strings.EqualFold(name, "__id__")
}

// idBounds is what a query's filters on "id" allow: IDs in [lo, hi], in set
// if set is not nil, and none of ne.
type idBounds struct {
	lo, hi uint64
	set    []uint64 // sorted; nil: no In/Eq
	ne     []uint64
}

// restricts reports whether the bounds restrict anything.
func (b *idBounds) restricts() bool {
	return b.lo > 0 || b.hi < math.MaxUint64 || b.set != nil || len(b.ne) > 0
}

// match reports whether id passes the bounds.
func (b *idBounds) match(id uint64) bool {
	if id < b.lo || id > b.hi {
		return false
	}
	if b.set != nil {
		if _, ok := slices.BinarySearch(b.set, id); !ok {
			return false
		}
	}
	return !slices.Contains(b.ne, id)
}

// empty reports whether no ID can pass.
func (b *idBounds) empty() bool {
	return b.lo > b.hi || (b.set != nil && len(b.set) == 0)
}

// add adds one filter on "id" to b.
func (b *idBounds) add(w Filter) error {
	id := func(v any) (uint64, bool, error) {
		f := fieldDef{Name: IDField, Type: Int}
		n, err := normalize(&f, v)
		if err != nil {
			return 0, false, err
		}
		x := n.(int64)
		return uint64(max(x, 0)), x >= 0, nil
	}
	switch {
	case w.Op == OpEq && w.Value == nil:
		w.Op = OpIsNull
	case w.Op == OpNe && w.Value == nil:
		w.Op = OpNotNull
	case w.Op != OpIn && w.Op != OpIsNull && w.Op != OpNotNull && w.Value == nil:
		return errorf(ErrSchema, "filter id %s needs an ID", w.Op)
	}
	switch w.Op {
	case OpEq, OpIn:
		vals := []any{w.Value}
		if w.Op == OpIn {
			vals = w.Values
		}
		var ids []uint64
		for _, v := range vals {
			if v == nil {
				continue
			}
			n, ok, err := id(v)
			if err != nil {
				return err
			}
			if ok {
				ids = append(ids, n)
			}
		}
		slices.Sort(ids)
		ids = slices.Compact(ids)
		if b.set != nil {
			ids = slices.DeleteFunc(ids, func(x uint64) bool { _, ok := slices.BinarySearch(b.set, x); return !ok })
		}
		if ids == nil {
			ids = []uint64{}
		}
		b.set = ids
	case OpNe:
		n, ok, err := id(w.Value)
		if err != nil {
			return err
		}
		if ok {
			b.ne = append(b.ne, n)
		}
	case OpGt, OpGe, OpLt, OpLe:
		f := fieldDef{Name: IDField, Type: Int}
		nv, err := normalize(&f, w.Value)
		if err != nil {
			return err
		}
		x := nv.(int64)
		switch w.Op {
		case OpGt:
			x++
			fallthrough
		case OpGe:
			if x > 0 && uint64(x) > b.lo {
				b.lo = uint64(x)
			}
		case OpLt:
			x--
			fallthrough
		case OpLe:
			if x < 0 {
				b.lo, b.hi = 1, 0 // nothing
			} else if uint64(x) < b.hi {
				b.hi = uint64(x)
			}
		}
	case OpIsNull:
		b.lo, b.hi = 1, 0 // an ID is never null
	case OpNotNull:
	default:
		return errorf(ErrSchema, "filter id %s: IDs take =, !=, <, <=, >, >=, in and between", w.Op)
	}
	return nil
}

// orderTerm is one key of a query's order: a field, or the ID (f nil).
type orderTerm struct {
	f    *fieldDef
	desc bool
}

// compileOrder turns OrderBy into terms. The ID is the last tie-breaker of
// every order, so a term on "id" ends the list; an order that is only "id"
// ascending is the default order (no terms), and only "id" descending sets
// idDesc (a backwards walk, no sort).
func compileOrder(s *schema, order []Order) (terms []orderTerm, idDesc bool, err error) {
	for _, o := range order {
		if isIDField(o.Field) {
			if len(terms) == 0 {
				return nil, o.Desc, nil
			}
			if o.Desc {
				terms = append(terms, orderTerm{desc: true})
			}
			return terms, false, nil
		}
		f, err := s.field(o.Field)
		if err != nil {
			return nil, false, err
		}
		terms = append(terms, orderTerm{f: f, desc: o.Desc})
	}
	return terms, false, nil
}

// afterKey is a compiled Query.After: the record a page continues after.
type afterKey struct {
	id   uint64
	vals []any // the values of the order's field terms, canonical
}

// compileAfter compiles q.After against the order. In ID order it becomes
// a bound on IDs (the walk starts past it); on one indexed field ascending
// (or descending, if the field cannot be null) it also adds a range on that
// field, so that the index walk starts at the previous page's last value.
func (cq *compiledQuery) compileAfter(s *schema, a *Record) error {
	if a == nil {
		return nil
	}
	if a.ID == 0 {
		return errorf(ErrSchema, "Query.After: a record with ID 0 (pass the last record of the previous page)")
	}
	if len(cq.order) == 0 {
		if cq.idDesc {
			cq.ids.hi = min(cq.ids.hi, a.ID-1)
		} else if a.ID == math.MaxUint64 {
			cq.ids.lo, cq.ids.hi = 1, 0
		} else {
			cq.ids.lo = max(cq.ids.lo, a.ID+1)
		}
		return nil
	}
	k := &afterKey{id: a.ID}
	for _, t := range cq.order {
		if t.f == nil {
			k.vals = append(k.vals, nil)
			continue
		}
		v, ok := a.Values[t.f.Name]
		if !ok {
			return errorf(ErrSchema, "Query.After: the record has no %q, which the order needs (keep it in Query.Fields)", t.f.Name)
		}
		nullable := *t.f
		nullable.Nullable = true
		nv, err := normalize(&nullable, v)
		if err != nil {
			return err
		}
		k.vals = append(k.vals, nv)
	}
	cq.after = k
	if len(cq.order) == 1 && k.vals[0] != nil && s.index(cq.order[0].f.Name) != nil {
		t := cq.order[0]
		switch {
		case !t.desc:
			cq.conds = append(cq.conds, cond{f: t.f, op: OpGe, val: k.vals[0]})
		case !t.f.Nullable:
			cq.conds = append(cq.conds, cond{f: t.f, op: OpLe, val: k.vals[0]})
		}
	}
	return nil
}

// compareOrder orders two records by the query's terms, ties by ID
// ascending: the order of every Select.
func (cq *compiledQuery) compareOrder(aID uint64, a Values, bID uint64, b func(i int) any) int {
	for i, t := range cq.order {
		var c int
		if t.f == nil {
			c = cmpU64(aID, bID)
		} else {
			c = compareNullable(t.f.Type, a[t.f.Name], b(i))
		}
		if t.desc {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	return cmpU64(aID, bID)
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// accept reports whether a decoded record belongs to the result: its ID
// within the bounds, every filter, the keyset position, the predicate.
func (cq *compiledQuery) accept(r Record) bool {
	if !cq.ids.match(r.ID) || !matchAll(cq.conds, r.Values) {
		return false
	}
	if k := cq.after; k != nil && cq.compareOrder(r.ID, r.Values, k.id, func(i int) any { return k.vals[i] }) <= 0 {
		return false
	}
	return cq.q.Match == nil || callUser(func() bool { return cq.q.Match(r) })
}
