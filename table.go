package psbase

// table.go: typed tables — a Store seen through a Go struct type T
// (TableOf, Table[T]) and the schema derived from one (FieldsOf). The
// struct's fields map to record fields by the naming rule of structmap.go.
//
// May touch: nothing of its own (every call goes through the Store's
// methods, under their locks).

import (
	"context"
	"iter"
	"reflect"
	"strings"
)

// FieldsOf derives a schema from the struct type T, for Create or
// WithCreate: one Field per struct field that maps to a record field (by
// the naming rule of Record.Decode), in the struct's order, leaving out the
// ones that map to "id" and "version". Types follow the Go kinds: strings
// are String, integers Int (a uint64 above math.MaxInt64 is refused when
// stored), floats Float, bool Bool, time.Time Time, []byte Bytes; a
// pointer makes the field nullable. The psbase tag's options add to it:
// `psbase:"name,unique"` a unique index, `psbase:"name,index"` an index,
// `psbase:"name,nullable"` a nullable field of a non-pointer type.
func FieldsOf[T any]() ([]Field, error) {
	t := reflect.TypeFor[T]()
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t == timeType {
		return nil, errorf(ErrSchema, "FieldsOf wants a struct type, not %s", reflect.TypeFor[T]())
	}
	si := structInfoOf(t)
	if si.err != nil {
		return nil, si.err
	}
	var fields []Field
	for _, sf := range si.fields {
		if sf.special != specialNone {
			continue
		}
		ft := sf.typ
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		typ, ok := goKindType(ft)
		if !ok {
			return nil, errorf(ErrSchema, "FieldsOf %s: field %s has type %s, which no psbase type holds (string, integers, floats, bool, time.Time, []byte, or pointers to them)",
				t, fieldPath(t, sf.index), sf.typ)
		}
		fields = append(fields, Field{Name: sf.name, Type: typ, Nullable: sf.nullable, Indexed: sf.indexed || sf.unique, Unique: sf.unique})
	}
	if len(fields) == 0 {
		return nil, errorf(ErrSchema, "FieldsOf %s: no field maps to a record field", t)
	}
	return fields, nil
}

// goKindType is the psbase type that holds values of the Go type t.
func goKindType(t reflect.Type) (Type, bool) {
	if t == timeType {
		return Time, true
	}
	switch t.Kind() {
	case reflect.String:
		return String, true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return Int, true
	case reflect.Float32, reflect.Float64:
		return Float, true
	case reflect.Bool:
		return Bool, true
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return Bytes, true
		}
	}
	return 0, false
}

// Table is a Store seen through the struct type T: records go in and come
// out as T, mapped by the naming rule of Record.Decode. It is as safe for
// concurrent use as its Store; every method is the Store's method of the
// same name, under the same locks.
type Table[T any] struct {
	s     *Store
	names map[string]string // T's record field names → the schema's spelling
}

// TableOf returns the Store s seen through the struct type T. It checks that
// T is a struct that maps without clashes and that each of its record
// fields is one of the store's (compared without regard to case); a store
// field T does not have is fine (it reads back nothing into T and gets its
// default on Insert).
func TableOf[T any](ctx context.Context, s *Store) (*Table[T], error) {
	t := reflect.TypeFor[T]()
	if t.Kind() != reflect.Struct || t == timeType {
		return nil, wrapErr("table", s.path, errorf(ErrSchema, "TableOf wants a struct type, not %s", t))
	}
	si := structInfoOf(t)
	if si.err != nil {
		return nil, wrapErr("table", s.path, si.err)
	}
	fields, err := s.Schema(ctx)
	if err != nil {
		return nil, err
	}
	have := make(map[string]string, len(fields))
	for _, f := range fields {
		have[strings.ToLower(f.Name)] = f.Name
	}
	names := make(map[string]string, len(si.fields))
	for _, sf := range si.fields {
		if sf.special != specialNone {
			continue
		}
		name, ok := have[strings.ToLower(sf.name)]
		if !ok {
			return nil, wrapErr("table", s.path, errorf(ErrSchema, "%s.%s maps to %q, which the store does not have (fields: %s)",
				t, fieldPath(t, sf.index), sf.name, fieldNames(fields)))
		}
		names[sf.name] = name
	}
	return &Table[T]{s: s, names: names}, nil
}

// values turns v into record values spelled as the schema spells them, so
// that a single write travels through group commit as data.
func (t *Table[T]) values(v T) (Values, error) {
	rv, ok := structType(v)
	if !ok {
		return nil, errorf(ErrSchema, "a nil %T", v)
	}
	vals, err := structValues(rv)
	if err != nil {
		return nil, err
	}
	return t.respell(vals), nil
}

// respell renames vals' keys to the schema's spelling.
func (t *Table[T]) respell(vals Values) Values {
	for k, x := range vals {
		if name, ok := t.names[k]; ok && name != k {
			delete(vals, k)
			vals[name] = x
		}
	}
	return vals
}

// fieldNames lists a schema's names for an error message.
func fieldNames(fields []Field) string {
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.Name
	}
	return strings.Join(names, ", ")
}

// Store returns the store behind the table.
func (t *Table[T]) Store() *Store { return t.s }

// Insert stores v as a new record and returns its ID (v's ID field, if it
// has one, must be zero). Unlike a struct given to Store.Insert, it travels
// through group commit as data.
func (t *Table[T]) Insert(ctx context.Context, v T) (uint64, error) {
	vals, err := t.values(v)
	if err != nil {
		return 0, wrapErr("insert", t.s.path, err)
	}
	return t.s.Insert(ctx, vals)
}

// Get returns the record with that ID as a T, or ErrNotFound.
func (t *Table[T]) Get(ctx context.Context, id uint64) (T, error) {
	rec, err := t.s.Get(ctx, id)
	if err != nil {
		var zero T
		return zero, err
	}
	return decodeAs[T](rec)
}

// GetBy returns the one record whose field equals value, through a unique
// index (Store.GetBy).
func (t *Table[T]) GetBy(ctx context.Context, field string, value any) (T, error) {
	rec, err := t.s.GetBy(ctx, field, value)
	if err != nil {
		var zero T
		return zero, err
	}
	return decodeAs[T](rec)
}

// Update replaces the record id's fields with v's (a field tagged
// omitempty that is zero keeps its stored value). If v has a Version field
// that is not zero, the update is conditional, as Store.Update: it fails
// with ErrConflict unless the stored record still has that version. It
// returns the record as stored.
func (t *Table[T]) Update(ctx context.Context, id uint64, v T) (T, error) {
	vals, version, err := tableValues(id, v)
	var zero T
	if err != nil {
		return zero, wrapErr("update", t.s.path, err)
	}
	vals = t.respell(vals)
	var rec Record
	if version != 0 {
		rec, err = t.s.Update(ctx, Record{ID: id, Version: version}, vals)
	} else {
		rec, err = t.s.UpdateByID(ctx, id, vals)
	}
	if err != nil {
		return zero, err
	}
	return decodeAs[T](rec)
}

// tableValues is v as the changes of an update of record id: its ID field,
// if set, must be id; its Version field, if set, is returned apart.
func tableValues(id uint64, v any) (Values, uint64, error) {
	rv, ok := structType(v)
	if !ok {
		return nil, 0, errorf(ErrSchema, "a %T is not a struct", v)
	}
	vals, err := structValues(rv)
	if err != nil {
		return nil, 0, err
	}
	var version uint64
	for k, x := range vals {
		switch strings.ToLower(k) {
		case "id", "__id__":
			if n, ok := asUint(x); !ok || n != id {
				return nil, 0, errorf(ErrSchema, "the struct's ID %v is not the record's %d", x, id)
			}
			delete(vals, k)
		case "version", "__version__":
			n, ok := asUint(x)
			if !ok {
				return nil, 0, errorf(ErrSchema, "the struct's Version %v is not a version", x)
			}
			version = n
			delete(vals, k)
		}
	}
	return vals, version, nil
}

// asUint reads an integer of any Go kind as a uint64.
func asUint(x any) (uint64, bool) {
	rv := reflect.ValueOf(x)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if rv.Int() < 0 {
			return 0, false
		}
		return uint64(rv.Int()), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return rv.Uint(), true
	}
	return 0, false
}

// Upsert inserts v, or updates the one record whose key field (a unique
// index) equals v's, as Store.Upsert.
func (t *Table[T]) Upsert(ctx context.Context, key string, v T) (id uint64, inserted bool, err error) {
	vals, err := t.values(v)
	if err != nil {
		return 0, false, wrapErr("upsert", t.s.path, err)
	}
	return t.s.Upsert(ctx, key, vals)
}

// Delete removes the records with these IDs and returns how many existed.
func (t *Table[T]) Delete(ctx context.Context, ids ...uint64) (int, error) {
	return t.s.Delete(ctx, ids...)
}

// Select returns the records matching q as T values (q.Fields, if set,
// leaves T's other fields zero).
func (t *Table[T]) Select(ctx context.Context, q Query) ([]T, error) {
	recs, err := t.s.Select(ctx, q)
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(recs))
	for _, r := range recs {
		v, err := decodeAs[T](r)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// Scan streams the records matching q as T values, as Store.Scan does: in
// pages under short shared locks, not one snapshot.
func (t *Table[T]) Scan(ctx context.Context, q Query) iter.Seq2[T, error] {
	return decodeSeq[T](t.s.Scan(ctx, q))
}

// All iterates over the records matching q inside the transaction tx (of
// this table's store), as T values: one snapshot, as Tx.All.
func (t *Table[T]) All(tx *Tx, q Query) iter.Seq2[T, error] {
	return decodeSeq[T](tx.All(q))
}

// decodeSeq maps a record iterator to a T iterator; a record that does not
// decode ends the loop with its error.
func decodeSeq[T any](seq iter.Seq2[Record, error]) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		for r, err := range seq {
			var v T
			if err == nil {
				v, err = decodeAs[T](r)
			}
			if !yield(v, err) || err != nil {
				return
			}
		}
	}
}

// decodeAs decodes a record into a new T.
func decodeAs[T any](r Record) (T, error) {
	var v T
	err := r.Decode(&v)
	return v, err
}
