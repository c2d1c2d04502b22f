package psbase

// May touch: nothing but its Tx (the records, meta and index buckets of its transaction).

import (
	"fmt"
	"math"
)

// table.go: the record operations of a Tx. Nothing here locks or opens
// files: a Tx is handed out by the Store with its lock already held and its
// bbolt transaction open. Every write keeps three things in the same bbolt
// transaction, so they can never disagree, even when the process is killed:
// the record, the record count in the meta bucket, and the index entries.

// Insert adds a record and returns its new ID. v is a Values, a
// map[string]any or a struct (msgpack tags name its fields). Fields it does
// not give get their default; unknown fields, wrong types, nulls in
// non-nullable fields and attempts to set "id" or "version" are ErrSchema.
func (tx *Tx) Insert(v any) (id uint64, err error) {
	old, err := tx.enter(true)
	if err != nil {
		return 0, err
	}
	defer tx.exit(old, &err)
	vals, err := tx.prepare(v, false)
	if err != nil {
		return 0, err
	}
	return tx.insert(vals)
}

// insert writes a new record. Everything that can refuse it is checked
// before the first write (unique values, index key sizes, a free ID), so a
// refused insert leaves the transaction as it was.
func (tx *Tx) insert(vals Values) (uint64, error) {
	if err := tx.indexCheckUnique(0, vals); err != nil {
		return 0, err
	}
	// The sequence is the last ID handed out, so the next one must be free.
	// If a record already sits there the bucket's header is damaged (one bad
	// bit can set the sequence back): putting would overwrite that record.
	if next := tx.records.Sequence() + 1; tx.records.Get(tx.lookupKey(next)) != nil {
		return 0, errorf(ErrCorrupt, "the ID sequence (%d) is behind the records: record %d already exists; run Check", next-1, next)
	}
	id, err := tx.records.NextSequence()
	if err != nil {
		return 0, err
	}
	return id, tx.putNew(id, vals)
}

// putNew writes a new record under a free id, version 1, with its count
// and index entries (insert and InsertWithID, insert_id.go).
func (tx *Tx) putNew(id uint64, vals Values) error {
	data, err := encodeRecord(tx.sch, tx.format, id, 1, vals)
	if err != nil {
		return err
	}
	if err := tx.records.Put(idKey(id), data); err != nil {
		return err
	}
	tx.s.met.wrote(len(data))
	if err := tx.addCount(1); err != nil {
		return err
	}
	return tx.indexAdd(id, vals)
}

// prepare validates and normalizes input values. With partial (an update)
// missing fields stay missing; otherwise they get their defaults.
func (tx *Tx) prepare(v any, partial bool) (Values, error) {
	in, fromStruct, err := toValues(v)
	if err != nil {
		return nil, err
	}
	out := make(Values, len(tx.sch.Fields))
	for _, k := range sortedNames(in) {
		x := in[k]
		if fromStruct {
			k = tx.sch.canonicalName(k)
		}
		if isReserved(k) {
			if fromStruct && isZero(x) {
				continue
			}
			return nil, errorf(ErrSchema, "cannot set %q: ID and Version are assigned by the store", k)
		}
		f, err := tx.sch.field(k)
		if err != nil {
			return nil, err
		}
		nv, err := normalize(f, x)
		if err != nil {
			return nil, err
		}
		out[k] = nv
	}
	if !partial {
		for i := range tx.sch.Fields {
			f := &tx.sch.Fields[i]
			if _, ok := out[f.Name]; !ok {
				out[f.Name] = cloneValue(f.Default)
			}
		}
	}
	return out, nil
}

// Get returns the record with that ID, or ErrNotFound.
func (tx *Tx) Get(id uint64) (rec Record, err error) {
	old, err := tx.enter(false)
	if err != nil {
		return Record{}, err
	}
	defer tx.exit(old, &err)
	return tx.get(id)
}

func (tx *Tx) get(id uint64) (Record, error) {
	data := tx.records.Get(tx.lookupKey(id))
	if data == nil {
		return Record{}, errorf(ErrNotFound, "record %d", id)
	}
	tx.s.met.read(len(data))
	return decodeRecord(tx.sch, tx.format, id, data, nil)
}

// Update applies changes to the record rec.ID if its stored Version is still
// rec.Version, and returns the record as stored now (Version + 1). If another
// writer updated it since rec was read, Update returns ErrConflict and changes
// nothing: read it again and retry. changes may be partial (Values, map or
// struct); fields it does not name keep their values.
func (tx *Tx) Update(rec Record, changes any) (out Record, err error) {
	old, err := tx.enter(true)
	if err != nil {
		return Record{}, err
	}
	defer tx.exit(old, &err)
	v := rec.Version
	return tx.update(rec.ID, &v, changes)
}

// UpdateByID applies changes to the record with that ID whatever its
// version: inside a write transaction the read and the write are atomic
// anyway, so this is the read-modify-write primitive ("increment field n of
// record 7").
func (tx *Tx) UpdateByID(id uint64, changes any) (out Record, err error) {
	old, err := tx.enter(true)
	if err != nil {
		return Record{}, err
	}
	defer tx.exit(old, &err)
	return tx.update(id, nil, changes)
}

func (tx *Tx) update(id uint64, version *uint64, changes any) (Record, error) {
	vals, err := tx.prepare(changes, true)
	if err != nil {
		return Record{}, err
	}
	old, err := tx.get(id)
	if err != nil {
		return Record{}, err
	}
	if version != nil && old.Version != *version {
		return Record{}, &ConflictError{ID: id, Have: *version, Want: old.Version}
	}
	merged := make(Values, len(old.Values))
	for k, v := range old.Values {
		merged[k] = v
	}
	for k, v := range vals {
		merged[k] = v
	}
	if err := tx.indexCheckUnique(id, merged); err != nil {
		return Record{}, err
	}
	data, err := encodeRecord(tx.sch, tx.format, id, old.Version+1, merged)
	if err != nil {
		return Record{}, err
	}
	if err := tx.records.Put(idKey(id), data); err != nil {
		return Record{}, err
	}
	tx.s.met.wrote(len(data))
	if err := tx.indexReplace(id, old.Values, merged); err != nil {
		return Record{}, err
	}
	return Record{ID: id, Version: old.Version + 1, Values: merged}, nil
}

// Add adds delta to the Int field of the record with that ID and returns
// the field's new value: the atomic increment. A null value counts as 0. It
// is ErrSchema if the field is not an Int or the sum overflows int64, and
// ErrNotFound if there is no such record; nothing is written then.
func (tx *Tx) Add(id uint64, field string, delta int64) (v int64, err error) {
	err = tx.add(id, field, Int, func(cur any) (any, error) {
		c, _ := cur.(int64)
		if (delta > 0 && c > math.MaxInt64-delta) || (delta < 0 && c < math.MinInt64-delta) {
			return nil, errorf(ErrSchema, "field %q of record %d: %d + %d overflows int64", field, id, c, delta)
		}
		v = c + delta
		return v, nil
	})
	if err != nil {
		return 0, err
	}
	return v, nil
}

// AddFloat is Add for a Float field.
func (tx *Tx) AddFloat(id uint64, field string, delta float64) (v float64, err error) {
	err = tx.add(id, field, Float, func(cur any) (any, error) {
		c, _ := cur.(float64)
		v = c + delta
		return v, nil
	})
	if err != nil {
		return 0, err
	}
	return v, nil
}

// add replaces field (of type t) of record id with sum of its current
// value, refusing before any write what cannot be done.
func (tx *Tx) add(id uint64, field string, t Type, sum func(cur any) (any, error)) (err error) {
	old, err := tx.enter(true)
	if err != nil {
		return err
	}
	defer tx.exit(old, &err)
	f, err := tx.sch.field(field)
	if err != nil {
		return err
	}
	if f.Type != t {
		return errorf(ErrSchema, "field %q is %s, not %s", field, f.Type, t)
	}
	rec, err := tx.get(id)
	if err != nil {
		return err
	}
	v, err := sum(rec.Values[field])
	if err != nil {
		return err
	}
	_, err = tx.update(id, nil, Values{field: v})
	return err
}

// Delete removes the records with these IDs and returns how many it removed.
// If any ID does not exist it returns ErrNotFound and removes none.
func (tx *Tx) Delete(ids ...uint64) (n int, err error) {
	old, err := tx.enter(true)
	if err != nil {
		return 0, err
	}
	defer tx.exit(old, &err)
	olds := make([]Record, 0, len(ids))
	seen := make(map[uint64]bool, len(ids))
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		old, err := tx.get(id)
		if err != nil {
			return 0, err
		}
		olds = append(olds, old)
	}
	for _, old := range olds {
		if err := tx.records.Delete(tx.lookupKey(old.ID)); err != nil {
			return 0, err
		}
		if err := tx.indexRemove(old.ID, old.Values); err != nil {
			return 0, err
		}
	}
	if err := tx.addCount(-len(olds)); err != nil {
		return 0, err
	}
	return len(olds), nil
}

// addCount keeps the record count in the meta bucket, so Len is O(1).
func (tx *Tx) addCount(d int) error {
	n := int64(u64(tx.meta.Get(keyCount))) + int64(d)
	if n < 0 {
		return errorf(ErrCorrupt, "record count would go negative")
	}
	return tx.meta.Put(keyCount, putU64(uint64(n)))
}

// Len returns the number of records.
func (tx *Tx) Len() (n int, err error) {
	old, err := tx.enter(false)
	if err != nil {
		return 0, err
	}
	defer tx.exit(old, &err)
	return int(u64(tx.meta.Get(keyCount))), nil
}

func (tx *Tx) decodeAt(k, v []byte, fields map[string]bool) (Record, error) {
	if len(k) != 8 {
		return Record{}, errorf(ErrCorrupt, "record key %x is not 8 bytes", k)
	}
	tx.s.met.read(len(v))
	return decodeRecord(tx.sch, tx.format, u64(k), v, fields)
}

// String describes the transaction for logs.
func (tx *Tx) String() string {
	mode := "read-only"
	if tx.write {
		mode = "writable"
	}
	return fmt.Sprintf("psbase.Tx(%s, %s, %s)", tx.s.path, tx.op, mode)
}
