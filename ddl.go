package psbase

// May touch: nothing but its Tx (the schema and index buckets of its transaction).

import (
	"bytes"
	"context"
	"slices"

	"github.com/psbase/psbase/internal/backend"
)

// progressEvery is how many records CreateIndex indexes between progress calls.
const progressEvery = 1000

// createIndex builds the index on field from every record.
func (tx *Tx) createIndex(field string, unique bool, progress func(done, total int)) error {
	f, err := tx.sch.field(field)
	if err != nil {
		return err
	}
	if tx.sch.index(field) != nil {
		return errorf(ErrSchema, "field %q is already indexed", field)
	}
	root := tx.kt.Bucket(bucketIndexes)
	if root.Bucket([]byte(field)) != nil {
		if err := root.DeleteBucket([]byte(field)); err != nil { // a leftover
			return err
		}
	}
	b, err := root.CreateBucket([]byte(field))
	if err != nil {
		return err
	}
	keys, err := tx.indexEntries(f, unique, progress)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := b.Put(k, []byte{}); err != nil {
			return err
		}
	}
	if progress != nil {
		callUser(func() int { progress(len(keys), len(keys)); return 0 })
	}
	sch := tx.sch.clone()
	sch.Indexes = append(sch.Indexes, indexDef{Field: field, Num: f.Num, Unique: unique})
	tx.setSchema(sch)
	return nil
}

// indexEntries gathers the index entries of field f from every record,
// sorted, and (unique) refuses two records with one value: ErrDuplicate
// naming both. Sorted, because bbolt splits nodes only at commit, so puts in
// random order inside one large transaction memmove an ever larger leaf
// (quadratic); appends do not. progress, if set, hears every progressEvery
// records gathered.
func (tx *Tx) indexEntries(f *fieldDef, unique bool, progress func(done, total int)) ([][]byte, error) {
	total := int(u64(tx.meta.Get(keyCount)))
	keys := make([][]byte, 0, total)
	only := map[string]bool{f.Name: true}
	c := tx.records.Cursor()
	n := 0
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if err := tx.tick(&n); err != nil {
			return nil, err
		}
		rec, err := tx.decodeAt(k, v, only)
		if err != nil {
			return nil, err
		}
		keys = append(keys, entryKey(f, rec.Values[f.Name], rec.ID))
		if progress != nil && len(keys)%progressEvery == 0 {
			callUser(func() int { progress(len(keys), total); return 0 })
		}
	}
	slices.SortFunc(keys, bytes.Compare)
	if unique {
		for i := 1; i < len(keys); i++ {
			k, p := keys[i], keys[i-1]
			if k[0] != keyNull && bytes.Equal(k[:len(k)-8], p[:len(p)-8]) {
				return nil, errorf(ErrDuplicate, "cannot build unique index on %q: records %d and %d hold the same value",
					f.Name, u64(p[len(p)-8:]), u64(k[len(k)-8:]))
			}
		}
	}
	return keys, nil
}

// dropIndex removes the index on field.
func (tx *Tx) dropIndex(field string) error {
	if tx.sch.index(field) == nil {
		return errorf(ErrSchema, "field %q has no index", field)
	}
	root := tx.kt.Bucket(bucketIndexes)
	if root.Bucket([]byte(field)) != nil {
		if err := root.DeleteBucket([]byte(field)); err != nil {
			return err
		}
	}
	sch := tx.sch.clone()
	sch.Indexes = slices.DeleteFunc(sch.Indexes, func(ix indexDef) bool { return ix.Field == field })
	tx.setSchema(sch)
	return nil
}

// rebuildIndex rebuilds the index on field (after its default changed, the
// records that never stored it read back another value).
func (tx *Tx) rebuildIndex(field string) error {
	ix := tx.sch.index(field)
	if ix == nil {
		return nil
	}
	unique := ix.Unique
	if err := tx.dropIndex(field); err != nil {
		return err
	}
	return tx.createIndex(field, unique, nil)
}

// CreateIndex builds a secondary index on field, under the exclusive lock in
// one transaction: either the whole index exists afterwards or none of it.
// Every record gets an entry, nulls included, so ordered walks are complete.
// With Unique(), a second record with the same non-null value is refused
// with ErrDuplicate; any number of records may hold null in a unique field.
// With IndexProgress(fn), fn is called as records are indexed (done of
// total). Building fails with ErrDuplicate, changing nothing, when existing
// records already violate uniqueness.
//
// On a remote store whose backend bounds a commit (etcd), the build is
// written in pieces under the one store lock, invisible until its final
// small commit names it in the schema; a build that dies half-way leaves
// nothing visible, and the next CreateIndex removes its leftovers. There
// fn reports the entries committed so far, after each piece. Tx.CreateIndex
// (and AddField of an indexed field) stays one transaction.
func (s *Store) CreateIndex(ctx context.Context, field string, opts ...IndexOption) error {
	return s.run(ctx, "create-index", true, func(tx *Tx) error {
		if ch, ok := tx.kt.(backend.Chunker); ok { // a remote store with bounded commits: ddl_remote.go
			return tx.createIndexChunked(ch, field, opts...)
		}
		return tx.CreateIndex(field, opts...)
	})
}

// IndexOption configures CreateIndex.
type IndexOption func(*indexConfig)

type indexConfig struct {
	unique   bool
	progress func(done, total int)
}

// Unique makes CreateIndex build a unique index.
func Unique() IndexOption { return func(c *indexConfig) { c.unique = true } }

// IndexProgress makes CreateIndex call fn as records are indexed, with the
// number done and the total; fn runs under the store's lock: keep it short.
func IndexProgress(fn func(done, total int)) IndexOption {
	return func(c *indexConfig) { c.progress = fn }
}

// DropIndex removes the index on field.
func (s *Store) DropIndex(ctx context.Context, field string) error {
	return s.run(ctx, "drop-index", true, func(tx *Tx) error { return tx.DropIndex(field) })
}

// AddField adds a field after the field named after ("" = at the end). No
// record is rewritten: records written before read back f.Default.
func (s *Store) AddField(ctx context.Context, f Field, after string) error {
	return s.run(ctx, "add-field", true, func(tx *Tx) error { return tx.AddField(f, after) })
}

// DropField removes a field. Its values stay in old records until they are
// rewritten but can never be read again, even by a later field of the same
// name (values are keyed by a field number that is never reused). A field
// with an index loses its index.
func (s *Store) DropField(ctx context.Context, name string) error {
	return s.run(ctx, "drop-field", true, func(tx *Tx) error { return tx.DropField(name) })
}

// SetDefault changes (persistently) the default of a field: the value that
// inserts without it, and records that never stored it, get.
func (s *Store) SetDefault(ctx context.Context, name string, v any) error {
	return s.run(ctx, "set-default", true, func(tx *Tx) error { return tx.SetDefault(name, v) })
}

// CreateIndex is Store.CreateIndex inside a write transaction.
func (tx *Tx) CreateIndex(field string, opts ...IndexOption) (err error) {
	var c indexConfig
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	old, err := tx.enter(true)
	if err != nil {
		return err
	}
	defer tx.exit(old, &err)
	return tx.createIndex(field, c.unique, c.progress)
}

// DropIndex is Store.DropIndex inside a write transaction.
func (tx *Tx) DropIndex(field string) (err error) {
	old, err := tx.enter(true)
	if err != nil {
		return err
	}
	defer tx.exit(old, &err)
	return tx.dropIndex(field)
}

// AddField is Store.AddField inside a write transaction.
func (tx *Tx) AddField(f Field, after string) (err error) {
	old, err := tx.enter(true)
	if err != nil {
		return err
	}
	defer tx.exit(old, &err)
	sch := tx.sch.clone()
	if err := sch.addField(f, after); err != nil {
		return err
	}
	tx.setSchema(sch)
	if f.Indexed || f.Unique {
		return tx.createIndex(f.Name, f.Unique, nil)
	}
	return nil
}

// DropField is Store.DropField inside a write transaction.
func (tx *Tx) DropField(name string) (err error) {
	old, err := tx.enter(true)
	if err != nil {
		return err
	}
	defer tx.exit(old, &err)
	sch := tx.sch.clone()
	if sch.index(name) != nil {
		if err := tx.dropIndex(name); err != nil {
			return err
		}
		sch = tx.sch.clone()
	}
	if err := sch.dropField(name); err != nil {
		return err
	}
	tx.setSchema(sch)
	return nil
}

// SetDefault is Store.SetDefault inside a write transaction.
func (tx *Tx) SetDefault(name string, v any) (err error) {
	old, err := tx.enter(true)
	if err != nil {
		return err
	}
	defer tx.exit(old, &err)
	sch := tx.sch.clone()
	f, err := sch.field(name)
	if err != nil {
		return err
	}
	if f.Default, err = f.defaultValue(v); err != nil {
		return err
	}
	tx.setSchema(sch)
	// Records that never stored the field now read the new default: their
	// index entries must follow.
	return tx.rebuildIndex(name)
}

// setSchema replaces the transaction's schema; Commit persists it.
func (tx *Tx) setSchema(sch *schema) {
	tx.sch = sch
	tx.schemaChanged = true
}
