package psbase

// May touch: nothing (filters and queries in memory).

import (
	"math"
	"sort"
	"strings"
)

// Operator is a filter's comparison (the Op of a Filter).
type Operator string

// The filter operators. Comparisons with a null stored value are false,
// except IsNull and Ne (a null value is "not equal" to any non-null value).
// Eq with a nil Value is IsNull; Ne with a nil Value is NotNull.
const (
	OpEq      Operator = "="
	OpNe      Operator = "!="
	OpLt      Operator = "<"
	OpLe      Operator = "<="
	OpGt      Operator = ">"
	OpGe      Operator = ">="
	OpIn      Operator = "in"
	OpPrefix  Operator = "prefix"
	OpIsNull  Operator = "is-null"
	OpNotNull Operator = "not-null"
	OpBetween Operator = "between" // Values[0] <= field <= Values[1]
)

// Filter is one condition of a query: Field Op Value (Values for OpIn).
type Filter struct {
	Field  string
	Op     Operator
	Value  any
	Values []any // the set, for OpIn
}

// Eq, Ne, Lt, Le, Gt, Ge, In, Prefix, IsNull and NotNull build filters.
func Eq(field string, v any) Filter { return Filter{Field: field, Op: OpEq, Value: v} }

// Ne matches records whose field differs from v (null included).
func Ne(field string, v any) Filter { return Filter{Field: field, Op: OpNe, Value: v} }

// Lt matches field < v.
func Lt(field string, v any) Filter { return Filter{Field: field, Op: OpLt, Value: v} }

// Le matches field <= v.
func Le(field string, v any) Filter { return Filter{Field: field, Op: OpLe, Value: v} }

// Gt matches field > v.
func Gt(field string, v any) Filter { return Filter{Field: field, Op: OpGt, Value: v} }

// Ge matches field >= v.
func Ge(field string, v any) Filter { return Filter{Field: field, Op: OpGe, Value: v} }

// In matches records whose field equals one of vs.
func In(field string, vs ...any) Filter { return Filter{Field: field, Op: OpIn, Values: vs} }

// Prefix matches string or bytes fields that start with p.
func Prefix(field string, p any) Filter { return Filter{Field: field, Op: OpPrefix, Value: p} }

// IsNull matches records whose field is null.
func IsNull(field string) Filter { return Filter{Field: field, Op: OpIsNull} }

// NotNull matches records whose field is not null.
func NotNull(field string) Filter { return Filter{Field: field, Op: OpNotNull} }

// Between matches lo <= field <= hi: one Filter, like every other builder
// (it is Ge and Le together, and uses an index as a range does).
func Between(field string, lo, hi any) Filter {
	return Filter{Field: field, Op: OpBetween, Values: []any{lo, hi}}
}

// Order is one sort key of a query.
type Order struct {
	Field string
	Desc  bool
}

// Asc sorts by field, smallest first (nulls first).
func Asc(field string) Order { return Order{Field: field} }

// Desc sorts by field, largest first (nulls last).
func Desc(field string) Order { return Order{Field: field, Desc: true} }

// Query describes a Select. The zero Query selects every record in ID order.
type Query struct {
	// Where holds conditions that must all hold (AND).
	Where []Filter
	// Match, if set, is called for each record that passes Where; return
	// false to leave it out. It runs under the store's lock: keep it short
	// and never call another store from it.
	Match func(Record) bool
	// OrderBy sorts the result; the default is ID order. Ties keep ID order.
	OrderBy []Order
	// Offset skips that many matching records; Limit (if > 0) caps the result.
	Offset, Limit int
	// Fields projects the result onto these fields (nil: every field).
	Fields []string
	// After, if set, continues a previous page: only records strictly
	// after this one in the query's order are returned (keyset
	// pagination). Pass the last record of the previous page; with an
	// OrderBy it must hold the order's fields. In ID order (the default,
	// or OrderBy "id" either way) and in the order of one indexed field,
	// the walk starts where the previous page ended, so page 1000 costs
	// what page 1 costs; an Offset counts from there.
	After *Record
}

// cond is a Filter compiled against the schema: its value is canonical.
type cond struct {
	f      *fieldDef
	op     Operator
	val    any
	set    []any
	prefix []byte
}

// compileFilters compiles the filters on schema fields; the ones on the ID
// go into ids.
func compileFilters(s *schema, where []Filter, ids *idBounds) ([]cond, error) {
	out := make([]cond, 0, len(where))
	// Between is Ge and Le: expand it, so that the planner and the matcher
	// see two range conditions.
	var expanded []Filter
	for _, w := range where {
		if w.Op != OpBetween {
			expanded = append(expanded, w)
			continue
		}
		if len(w.Values) != 2 {
			return nil, errorf(ErrSchema, "filter %s between needs two values (lo, hi), got %d", w.Field, len(w.Values))
		}
		expanded = append(expanded, Ge(w.Field, w.Values[0]), Le(w.Field, w.Values[1]))
	}
	for _, w := range expanded {
		if isIDField(w.Field) {
			if err := ids.add(w); err != nil {
				return nil, err
			}
			continue
		}
		f, err := s.field(w.Field)
		if err != nil {
			return nil, err
		}
		c := cond{f: f, op: w.Op}
		nullable := *f
		nullable.Nullable = true // a nil value is a legal operand here
		switch w.Op {
		case OpEq, OpNe:
			if w.Value == nil {
				c.op = OpIsNull
				if w.Op == OpNe {
					c.op = OpNotNull
				}
				break
			}
			if c.val, err = normalize(&nullable, w.Value); err != nil {
				return nil, err
			}
		case OpLt, OpLe, OpGt, OpGe:
			if w.Value == nil {
				return nil, errorf(ErrSchema, "filter %s %s needs a value", w.Field, w.Op)
			}
			if c.val, err = normalize(&nullable, w.Value); err != nil {
				return nil, err
			}
		case OpIn:
			for _, v := range w.Values {
				nv, err := normalize(&nullable, v)
				if err != nil {
					return nil, err
				}
				c.set = append(c.set, nv)
			}
		case OpPrefix:
			switch p := w.Value.(type) {
			case string:
				c.prefix = []byte(p)
			case []byte:
				c.prefix = p
			default:
				return nil, errorf(ErrSchema, "prefix filter on %q wants a string, got %T", w.Field, w.Value)
			}
			if f.Type != String && f.Type != Bytes {
				return nil, errorf(ErrSchema, "prefix filter on %q: field is %s, not string or bytes", w.Field, f.Type)
			}
		case OpIsNull, OpNotNull:
		default:
			return nil, errorf(ErrSchema, "unknown filter operator %q on %q", w.Op, w.Field)
		}
		out = append(out, c)
	}
	return out, nil
}

// match reports whether a record's values satisfy the condition.
func (c *cond) match(vals Values) bool {
	v := vals[c.f.Name]
	switch c.op {
	case OpIsNull:
		return v == nil
	case OpNotNull:
		return v != nil
	case OpNe:
		return v == nil || compareValues(c.f.Type, v, c.val) != 0
	}
	if v == nil {
		return false
	}
	switch c.op {
	case OpEq:
		return compareValues(c.f.Type, v, c.val) == 0
	case OpLt:
		return compareValues(c.f.Type, v, c.val) < 0
	case OpLe:
		return compareValues(c.f.Type, v, c.val) <= 0
	case OpGt:
		return compareValues(c.f.Type, v, c.val) > 0
	case OpGe:
		return compareValues(c.f.Type, v, c.val) >= 0
	case OpIn:
		for _, s := range c.set {
			if s != nil && compareValues(c.f.Type, v, s) == 0 {
				return true
			}
		}
		return false
	case OpPrefix:
		switch x := v.(type) {
		case string:
			return strings.HasPrefix(x, string(c.prefix))
		case []byte:
			return len(x) >= len(c.prefix) && string(x[:len(c.prefix)]) == string(c.prefix)
		}
	}
	return false
}

func matchAll(conds []cond, vals Values) bool {
	for i := range conds {
		if !conds[i].match(vals) {
			return false
		}
	}
	return true
}

// compiledQuery is a Query checked against the schema.
type compiledQuery struct {
	q       Query
	conds   []cond
	ids     idBounds        // the filters on "id"
	order   []orderTerm     // the sort; empty: ID order
	idDesc  bool            // ID order, backwards
	after   *afterKey       // Query.After in an order other than the ID's
	project map[string]bool // nil: all fields
	plan    *indexPlan      // chosen by Tx.planQuery
	planned bool
	// decodeFields is what must be decoded to evaluate the query: the
	// projection plus every field the filters, sort and predicate need.
	decodeFields map[string]bool
}

func compileQuery(s *schema, q Query) (*compiledQuery, error) {
	if q.Offset < 0 || q.Limit < 0 {
		return nil, errorf(ErrSchema, "negative offset or limit")
	}
	cq := &compiledQuery{q: q, ids: idBounds{hi: math.MaxUint64}}
	conds, err := compileFilters(s, q.Where, &cq.ids)
	if err != nil {
		return nil, err
	}
	cq.conds = conds
	if cq.order, cq.idDesc, err = compileOrder(s, q.OrderBy); err != nil {
		return nil, err
	}
	if err := cq.compileAfter(s, q.After); err != nil {
		return nil, err
	}
	if q.Fields != nil {
		cq.project = make(map[string]bool, len(q.Fields))
		for _, name := range q.Fields {
			if _, err := s.field(name); err != nil {
				return nil, err
			}
			cq.project[name] = true
		}
		if q.Match == nil { // a predicate sees whole records
			cq.decodeFields = make(map[string]bool, len(q.Fields)+len(conds)+len(q.OrderBy))
			for n := range cq.project {
				cq.decodeFields[n] = true
			}
			for _, c := range conds {
				cq.decodeFields[c.f.Name] = true
			}
			for _, t := range cq.order {
				if t.f != nil {
					cq.decodeFields[t.f.Name] = true
				}
			}
		}
	}
	return cq, nil
}

// sortRecords orders records by the query's keys, ties by ID.
func (cq *compiledQuery) sortRecords(recs []Record) {
	sort.SliceStable(recs, func(i, j int) bool {
		return cq.compareOrder(recs[i].ID, recs[i].Values, recs[j].ID, func(k int) any {
			if t := cq.order[k]; t.f != nil {
				return recs[j].Values[t.f.Name]
			}
			return nil
		}) < 0
	})
}

// project trims a record to the projection.
func (cq *compiledQuery) project1(r Record) Record {
	if cq.project == nil {
		return r
	}
	for k := range r.Values {
		if !cq.project[k] {
			delete(r.Values, k)
		}
	}
	return r
}
