package psbase

// structmap.go: how a Go struct maps to a record — which struct field holds
// which record field (the naming rule), a struct as the input of Insert,
// Update and Upsert, and Record.Decode's output.
//
// The naming rule, for each exported field (embedded structs are flattened,
// as encoding/json does; a shallower field hides a deeper one of the same
// name):
//
//  1. a `psbase:"name,opts"` tag names it;
//  2. else a `msgpack:"name"` tag;
//  3. else a `json:"name"` tag;
//  4. else the Go field name.
//
// A tag of "-" leaves the field out. Record field names are matched exactly
// first, then without regard to case (so an untagged field Name holds the
// record field "name"). The struct field that maps to "id" (or "__id__")
// receives the record's ID and the one that maps to "version" its Version;
// on input they are ignored while zero.
//
// May touch: nothing (reflection over the caller's values).

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"
)

// structField is one struct field that maps to a record field.
type structField struct {
	name      string
	index     []int // the path for reflect.Value.FieldByIndex
	typ       reflect.Type
	omitEmpty bool
	unique    bool // psbase tag option "unique"
	indexed   bool // psbase tag option "index"
	nullable  bool // a pointer field, or the psbase tag option "nullable"
	special   int  // specialNone, specialID, specialVersion
}

const (
	specialNone = iota
	specialID
	specialVersion
)

// structInfo is what a struct type maps to.
type structInfo struct {
	typ    reflect.Type
	fields []structField
	err    error // the type cannot map (two fields claim one name)
}

// structInfos memoizes structInfo per type, as encoding/json memoizes its
// encoders: a cache of facts about types, never of data.
var structInfos sync.Map // reflect.Type → *structInfo

var timeType = reflect.TypeFor[time.Time]()

// structInfoOf returns how the struct type t maps to a record.
func structInfoOf(t reflect.Type) *structInfo {
	if si, ok := structInfos.Load(t); ok {
		return si.(*structInfo)
	}
	si := &structInfo{typ: t}
	type candidate struct {
		structField
		depth int
	}
	var cands []candidate
	var walk func(t reflect.Type, path []int, depth int, seen map[reflect.Type]bool)
	walk = func(t reflect.Type, path []int, depth int, seen map[reflect.Type]bool) {
		if seen[t] {
			return
		}
		seen[t] = true
		defer delete(seen, t)
		for i := range t.NumField() {
			sf := t.Field(i)
			name, opts, tagged := structTagName(sf)
			if name == "-" && tagged {
				continue
			}
			idx := append(append([]int(nil), path...), i)
			ft := sf.Type
			if sf.Anonymous && !tagged {
				et := ft
				if et.Kind() == reflect.Pointer {
					et = et.Elem()
				}
				if et.Kind() == reflect.Struct && et != timeType {
					walk(et, idx, depth+1, seen)
					continue
				}
			}
			if !sf.IsExported() {
				continue
			}
			if name == "" {
				name = sf.Name
			}
			f := structField{name: name, index: idx, typ: ft}
			for _, o := range opts {
				switch o {
				case "omitempty":
					f.omitEmpty = true
				case "unique":
					f.unique = true
				case "index":
					f.indexed = true
				case "nullable":
					f.nullable = true
				}
			}
			if ft.Kind() == reflect.Pointer {
				f.nullable = true
			}
			switch strings.ToLower(name) {
			case "id", "__id__":
				f.special = specialID
			case "version", "__version__":
				f.special = specialVersion
			}
			cands = append(cands, candidate{f, depth})
		}
	}
	walk(t, nil, 0, map[reflect.Type]bool{})

	// A shallower field hides a deeper one; two at the same depth clash.
	best := map[string]int{} // folded name → index in cands
	for i, c := range cands {
		key := strings.ToLower(c.name)
		j, ok := best[key]
		switch {
		case !ok || c.depth < cands[j].depth:
			best[key] = i
		case c.depth == cands[j].depth && si.err == nil:
			si.err = errorf(ErrSchema, "struct %s: fields %s and %s both map to %q (name one with a psbase tag)",
				t, fieldPath(t, cands[j].index), fieldPath(t, c.index), c.name)
		}
	}
	for i, c := range cands {
		if best[strings.ToLower(c.name)] == i {
			si.fields = append(si.fields, c.structField)
		}
	}
	actual, _ := structInfos.LoadOrStore(t, si)
	return actual.(*structInfo)
}

// structTagName reads a field's name and options from the first of its
// psbase, msgpack and json tags that is present.
func structTagName(sf reflect.StructField) (name string, opts []string, tagged bool) {
	for _, key := range [...]string{"psbase", "msgpack", "json"} {
		tag, ok := sf.Tag.Lookup(key)
		if !ok {
			continue
		}
		parts := strings.Split(tag, ",")
		return parts[0], parts[1:], true
	}
	return "", nil, false
}

// fieldPath names a (possibly embedded) struct field for an error message.
func fieldPath(t reflect.Type, index []int) string {
	var parts []string
	for _, i := range index {
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		f := t.Field(i)
		parts = append(parts, f.Name)
		t = f.Type
	}
	return strings.Join(parts, ".")
}

// structType returns the struct type behind v (through pointers), or nil.
func structType(v any) (reflect.Value, bool) {
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return reflect.Value{}, false
		}
		rv = rv.Elem()
	}
	if rv.Kind() != reflect.Struct || rv.Type() == timeType {
		return reflect.Value{}, false
	}
	return rv, true
}

// structValues turns a struct into record values by the naming rule. Zero
// ID and Version fields are left out (a struct that is about to be
// inserted); non-zero ones are kept, so that prepare refuses them.
func structValues(rv reflect.Value) (Values, error) {
	si := structInfoOf(rv.Type())
	if si.err != nil {
		return nil, si.err
	}
	out := make(Values, len(si.fields))
	for i := range si.fields {
		f := &si.fields[i]
		fv, ok := fieldByIndex(rv, f.index, false)
		if !ok {
			continue // inside a nil embedded pointer
		}
		if (f.special != specialNone || f.omitEmpty) && fv.IsZero() {
			continue
		}
		if fv.Kind() == reflect.Pointer && fv.IsNil() {
			out[f.name] = nil
			continue
		}
		out[f.name] = fv.Interface()
	}
	return out, nil
}

// fieldByIndex walks index from v; with alloc it allocates nil embedded
// pointers on the way (Decode), without it reports false at one.
func fieldByIndex(v reflect.Value, index []int, alloc bool) (reflect.Value, bool) {
	for n, i := range index {
		if n > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				if !alloc || !v.CanSet() {
					return reflect.Value{}, false
				}
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.Field(i)
	}
	return v, true
}

// canonicalName returns the schema's name for a struct's record field: the
// name itself if the schema has it, else the one schema field equal to it
// without regard to case, else name unchanged (prepare then refuses it).
func (s *schema) canonicalName(name string) string {
	if _, ok := s.byName[name]; ok {
		return name
	}
	for i := range s.Fields {
		if strings.EqualFold(s.Fields[i].Name, name) {
			return s.Fields[i].Name
		}
	}
	return name
}

// decodeStruct stores r into the struct rv by the naming rule.
func (r Record) decodeStruct(rv reflect.Value) error {
	si := structInfoOf(rv.Type())
	if si.err != nil {
		return si.err
	}
	var folded map[string]string // lower-case → record field name
	lookup := func(name string) (any, bool) {
		if v, ok := r.Values[name]; ok {
			return v, true
		}
		if folded == nil {
			folded = make(map[string]string, len(r.Values))
			for k := range r.Values {
				folded[strings.ToLower(k)] = k
			}
		}
		k, ok := folded[strings.ToLower(name)]
		if !ok {
			return nil, false
		}
		return r.Values[k], true
	}
	matched := 0
	for i := range si.fields {
		f := &si.fields[i]
		var v any
		switch f.special {
		case specialID:
			v = int64(r.ID)
		case specialVersion:
			v = int64(r.Version)
		default:
			var ok bool
			if v, ok = lookup(f.name); !ok {
				continue
			}
			matched++
		}
		fv, _ := fieldByIndex(rv, f.index, true)
		if err := setField(fv, v); err != nil {
			return errorf(ErrSchema, "record %d: field %q into %s.%s: %v", r.ID, f.name, rv.Type(), fieldPath(rv.Type(), f.index), err)
		}
	}
	if matched == 0 && len(r.Values) > 0 {
		return errorf(ErrSchema, "record %d: no field of %s matches the record's fields %s (name struct fields with `psbase:\"name\"` tags)",
			r.ID, rv.Type(), quotedNames(r.Values))
	}
	return nil
}

// quotedNames lists a record's field names for an error message.
func quotedNames(vals Values) string {
	names := sortedNames(vals)
	if len(names) > 8 {
		names = append(names[:8], "…")
	}
	return "(" + strings.Join(names, ", ") + ")"
}

// setField stores the canonical record value v into fv, converting between
// Go types of the same kind; a value that does not fit is an error.
func setField(fv reflect.Value, v any) error {
	if v == nil {
		fv.SetZero()
		return nil
	}
	switch fv.Kind() {
	case reflect.Pointer:
		if fv.IsNil() {
			fv.Set(reflect.New(fv.Type().Elem()))
		}
		return setField(fv.Elem(), v)
	case reflect.Interface:
		x := reflect.ValueOf(v)
		if !x.Type().AssignableTo(fv.Type()) {
			return fmt.Errorf("a %T does not fit %s", v, fv.Type())
		}
		fv.Set(x)
		return nil
	}
	switch x := v.(type) {
	case string:
		if fv.Kind() == reflect.String {
			fv.SetString(x)
			return nil
		}
	case int64:
		switch fv.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			if fv.OverflowInt(x) {
				return fmt.Errorf("%d overflows %s", x, fv.Type())
			}
			fv.SetInt(x)
			return nil
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
			if x < 0 || fv.OverflowUint(uint64(x)) {
				return fmt.Errorf("%d overflows %s", x, fv.Type())
			}
			fv.SetUint(uint64(x))
			return nil
		case reflect.Float32, reflect.Float64:
			fv.SetFloat(float64(x))
			return nil
		}
	case float64:
		switch fv.Kind() {
		case reflect.Float32, reflect.Float64:
			if fv.OverflowFloat(x) {
				return fmt.Errorf("%g overflows %s", x, fv.Type())
			}
			fv.SetFloat(x)
			return nil
		}
	case bool:
		if fv.Kind() == reflect.Bool {
			fv.SetBool(x)
			return nil
		}
	case time.Time:
		if fv.Type() == timeType {
			fv.Set(reflect.ValueOf(x))
			return nil
		}
	case []byte:
		if fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.Uint8 {
			fv.SetBytes(bytes.Clone(x))
			return nil
		}
	}
	return fmt.Errorf("a %T does not fit %s", v, fv.Type())
}
