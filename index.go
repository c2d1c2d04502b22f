package psbase

// May touch: nothing but its Tx (the index buckets of its transaction).

import (
	"bytes"

	"github.com/psbase/psbase/internal/kv"
)

// index.go: secondary indexes. Each index is a bbolt bucket inside the
// "indexes" bucket, named after its field, holding one entry per record:
// key = orderKey(value) || bigEndian(ID), value empty. Nulls are indexed too
// (orderKey 0x00, first), so an index walk in order sees every record, and
// Check can demand exactly one entry per record. Entries are written in the
// same bbolt transaction as the record, so an index can never disagree with
// the records, even when a process is killed mid-write.
//
// A unique index refuses a second record with the same non-null value
// (ErrDuplicate); any number of records may be null.

// indexDef describes a secondary index on one field.
type indexDef struct {
	Field  string `msgpack:"field"`
	Num    uint32 `msgpack:"num"` // the field's number when the index was made
	Unique bool   `msgpack:"unique"`
}

func (s *schema) index(field string) *indexDef {
	for i := range s.Indexes {
		if s.Indexes[i].Field == field {
			return &s.Indexes[i]
		}
	}
	return nil
}

// indexBucket returns the bucket of the index on field.
func (tx *Tx) indexBucket(field string) (kv.Bucket, error) {
	root := tx.kt.Bucket(bucketIndexes)
	b := root.Bucket([]byte(field))
	if b == nil {
		return nil, errorf(ErrCorrupt, "index %q is in the schema but its bucket is missing", field)
	}
	return b, nil
}

// entryKey is the index entry of record id with value v of field f.
func entryKey(f *fieldDef, v any, id uint64) []byte {
	k := orderKey(make([]byte, 0, 24), f.Type, v)
	return append(k, idKey(id)...)
}

// indexCheckUnique refuses vals (for record id; 0 for a new record) if a
// unique index already holds one of its values under another record.
// It also refuses a value too large to be an index key, so that nothing is
// written: bbolt's keys are at most maxIndexValue + 8 (the ID) bytes.
func (tx *Tx) indexCheckUnique(id uint64, vals Values) error {
	for i := range tx.sch.Indexes {
		ix := &tx.sch.Indexes[i]
		f, err := tx.sch.field(ix.Field)
		if err != nil {
			return errorf(ErrCorrupt, "index on unknown field %q", ix.Field)
		}
		v := vals[ix.Field]
		if v != nil {
			if n := orderKeyLen(f.Type, v); n > maxIndexValue {
				return errorf(ErrSchema, "field %q: the value is too large to index (%d bytes encoded, the limit is %d: bbolt's 32 KiB key limit minus the 8-byte ID)", ix.Field, n, maxIndexValue)
			}
		}
		if !ix.Unique || v == nil {
			continue
		}
		b, err := tx.indexBucket(ix.Field)
		if err != nil {
			return err
		}
		if other, ok := firstWithPrefix(b, orderKey(nil, f.Type, v)); ok && other != id {
			return &DuplicateError{Field: ix.Field, Value: v, ExistingID: other}
		}
	}
	return nil
}

// maxIndexValue is the longest encoded value an index entry can hold:
// bbolt's maximum key size (bolt.MaxKeySize, 32768) minus the 8-byte ID.
const maxIndexValue = 32768 - 8

// firstWithPrefix returns the ID of the first entry whose value is exactly
// the one encoded by vk.
func firstWithPrefix(b kv.Bucket, vk []byte) (uint64, bool) {
	k, _ := b.Cursor().Seek(vk)
	if k != nil && len(k) == len(vk)+8 && bytes.HasPrefix(k, vk) {
		return u64(k[len(vk):]), true
	}
	return 0, false
}

func (tx *Tx) indexAdd(id uint64, vals Values) error {
	return tx.eachIndex(func(b kv.Bucket, f *fieldDef) error {
		return b.Put(entryKey(f, vals[f.Name], id), []byte{})
	})
}

func (tx *Tx) indexRemove(id uint64, vals Values) error {
	return tx.eachIndex(func(b kv.Bucket, f *fieldDef) error {
		return b.Delete(entryKey(f, vals[f.Name], id))
	})
}

func (tx *Tx) indexReplace(id uint64, old, new Values) error {
	return tx.eachIndex(func(b kv.Bucket, f *fieldDef) error {
		ok, nk := entryKey(f, old[f.Name], id), entryKey(f, new[f.Name], id)
		if bytes.Equal(ok, nk) {
			return nil
		}
		if err := b.Delete(ok); err != nil {
			return err
		}
		return b.Put(nk, []byte{})
	})
}

func (tx *Tx) eachIndex(fn func(kv.Bucket, *fieldDef) error) error {
	for i := range tx.sch.Indexes {
		ix := &tx.sch.Indexes[i]
		f, err := tx.sch.field(ix.Field)
		if err != nil {
			return errorf(ErrCorrupt, "index on unknown field %q", ix.Field)
		}
		b, err := tx.indexBucket(ix.Field)
		if err != nil {
			return err
		}
		if err := fn(b, f); err != nil {
			return err
		}
	}
	return nil
}

// Upsert inserts v, or updates the record whose unique key field holds v's
// value of it (see Store.Upsert). On update, fields v does not give keep
// their values.
func (tx *Tx) Upsert(key string, v any) (id uint64, inserted bool, err error) {
	old, err := tx.enter(true)
	if err != nil {
		return 0, false, err
	}
	defer tx.exit(old, &err)
	ix := tx.sch.index(key)
	if ix == nil || !ix.Unique {
		return 0, false, errorf(ErrSchema, "upsert key %q needs a unique index", key)
	}
	vals, err := tx.prepare(v, true)
	if err != nil {
		return 0, false, err
	}
	kv, ok := vals[key]
	if !ok || kv == nil {
		return 0, false, errorf(ErrSchema, "upsert needs a non-null value for the key %q", key)
	}
	f, _ := tx.sch.field(key)
	b, err := tx.indexBucket(key)
	if err != nil {
		return 0, false, err
	}
	if id, found := firstWithPrefix(b, orderKey(nil, f.Type, kv)); found {
		_, err := tx.update(id, nil, vals)
		return id, false, err
	}
	full, err := tx.prepare(v, false)
	if err != nil {
		return 0, false, err
	}
	id, err = tx.insert(full)
	return id, err == nil, err
}

// GetBy returns the record whose uniquely indexed field equals value, or
// ErrNotFound.
func (tx *Tx) GetBy(field string, value any) (rec Record, err error) {
	old, err := tx.enter(false)
	if err != nil {
		return Record{}, err
	}
	defer tx.exit(old, &err)
	ix := tx.sch.index(field)
	if ix == nil || !ix.Unique {
		return Record{}, errorf(ErrSchema, "GetBy field %q needs a unique index", field)
	}
	f, _ := tx.sch.field(field)
	nf := *f
	nf.Nullable = true
	v, err := normalize(&nf, value)
	if err != nil {
		return Record{}, err
	}
	if v == nil {
		return Record{}, errorf(ErrSchema, "GetBy %q: null is not a key", field)
	}
	b, err := tx.indexBucket(field)
	if err != nil {
		return Record{}, err
	}
	id, ok := firstWithPrefix(b, orderKey(nil, f.Type, v))
	if !ok {
		return Record{}, errorf(ErrNotFound, "no record with %s = %s", field, shortValue(v))
	}
	return tx.get(id)
}
