package psbase

// ddl_remote.go: CreateIndex on a backend whose commits are bounded (etcd:
// operations and bytes per transaction, backend.Chunker). The index is
// written in pieces under the one store lock the transaction holds, where
// it will live (indexes/<field>), while the schema does not name it yet:
// queries, writers and Check ignore it (meta key index_build names the
// bucket being built); the final, small commit adds it to the schema and
// drops the marker. A build that dies half-way leaves an unnamed bucket
// that the next build removes. Local stores keep the single-transaction
// build of ddl.go.
//
// May touch: nothing but its Tx (the meta and index buckets; the backend
// commits the pieces).

import (
	"github.com/psbase/psbase/internal/backend"
)

// keyIndexBuild is the meta key naming the index bucket a chunked build is
// writing (absent when none is): the bucket is not an index until the
// schema names it.
var keyIndexBuild = []byte("index_build")

// createIndexChunked is CreateIndex on a backend that commits in pieces.
// Nothing is written before the records have been read and, for a unique
// index, checked: a duplicate is ErrDuplicate with nothing changed.
// progress reports the entries committed so far.
func (tx *Tx) createIndexChunked(ch backend.Chunker, field string, opts ...IndexOption) (err error) {
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
	f, err := tx.sch.field(field)
	if err != nil {
		return err
	}
	if tx.sch.index(field) != nil {
		return errorf(ErrSchema, "field %q is already indexed", field)
	}
	keys, err := tx.indexEntries(f, c.unique, nil)
	if err != nil {
		return err
	}
	total, n := len(keys), 0
	// First piece: remove what a build that died left (the bucket the
	// marker names, and any unnamed bucket at this field's place) and name
	// this build's bucket.
	root := tx.kt.Bucket(bucketIndexes)
	for _, name := range [][]byte{tx.meta.Get(keyIndexBuild), []byte(field)} {
		if len(name) > 0 && tx.sch.index(string(name)) == nil && root.Bucket(name) != nil {
			if err := root.DeleteBucket(name); err != nil {
				return err
			}
		}
	}
	if err := tx.meta.Put(keyIndexBuild, []byte(field)); err != nil {
		return err
	}
	if err := ch.Flush(); err != nil {
		return err
	}
	b, err := root.CreateBucket([]byte(field))
	if err != nil {
		return err
	}
	report := func(done int) {
		if c.progress != nil {
			callUser(func() int { c.progress(done, total); return 0 })
		}
	}
	for i, k := range keys {
		if err := tx.tick(&n); err != nil {
			return err
		}
		if err := b.Put(k, []byte{}); err != nil {
			return err
		}
		if ch.Full() {
			if err := ch.Flush(); err != nil {
				return err
			}
			report(i + 1)
		}
	}
	// The final commit (Tx.finish): the last entries, the schema naming
	// the index, the marker gone, the change log's entry.
	if err := tx.meta.Delete(keyIndexBuild); err != nil {
		return err
	}
	report(len(keys))
	sch := tx.sch.clone()
	sch.Indexes = append(sch.Indexes, indexDef{Field: field, Num: f.Num, Unique: c.unique})
	tx.setSchema(sch)
	return nil
}
