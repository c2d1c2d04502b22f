package psbase

// May touch: nothing but the transaction it is handed (kv.Tx).

import (
	"bytes"

	"github.com/psbase/psbase/internal/kv"
)

// checkIndexes verifies every index against the records: one entry per
// record with the right value, no entry for a missing record, no duplicate
// under a unique index, no stray index bucket.
func checkIndexes(btx kv.Tx, sch *schema, format uint32, rep *CheckReport) {
	root := btx.Bucket(bucketIndexes)
	records := btx.Bucket(bucketRecords)
	known := map[string]bool{}
	for _, ix := range sch.Indexes {
		known[ix.Field] = true
		rep.Indexes++
		f, err := sch.field(ix.Field)
		if err != nil {
			rep.add(0, ix.Field, "indexes an unknown field")
			continue
		}
		b := root.Bucket([]byte(ix.Field))
		if b == nil {
			rep.add(0, ix.Field, "bucket missing")
			continue
		}
		only := map[string]bool{ix.Field: true}
		// Every record has its entry.
		c := records.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(k) != 8 {
				continue
			}
			rec, err := decodeRecord(sch, format, u64(k), v, only)
			if err != nil {
				continue // reported by the record scan
			}
			if b.Get(entryKey(f, rec.Values[ix.Field], rec.ID)) == nil {
				rep.add(rec.ID, ix.Field, "entry missing for value %s", shortValue(rec.Values[ix.Field]))
			}
		}
		// Every entry points at a record holding that value; unique holds.
		var prevVal []byte
		var prevID uint64
		ic := b.Cursor()
		for k, _ := ic.First(); k != nil; k, _ = ic.Next() {
			if len(k) < 9 {
				rep.add(0, ix.Field, "short key %x", k)
				continue
			}
			id, val := u64(k[len(k)-8:]), k[:len(k)-8]
			data := records.Get(idKey(id))
			if data == nil {
				rep.add(id, ix.Field, "stale entry: no such record")
			} else if rec, err := decodeRecord(sch, format, id, data, only); err == nil {
				if !bytes.Equal(orderKey(nil, f.Type, rec.Values[ix.Field]), val) {
					rep.add(id, ix.Field, "stale entry: the record now holds %s", shortValue(rec.Values[ix.Field]))
				}
			}
			if ix.Unique && val[0] != keyNull && bytes.Equal(val, prevVal) {
				rep.add(id, ix.Field, "duplicate under unique index (also record %d)", prevID)
			}
			prevVal, prevID = append(prevVal[:0], val...), id
		}
	}
	var building []byte // a chunked build's bucket, not an index yet (ddl_remote.go)
	if meta := btx.Bucket(bucketMeta); meta != nil {
		building = meta.Get(keyIndexBuild)
	}
	_ = root.ForEachBucket(func(name []byte) error {
		if !known[string(name)] && !(len(building) > 0 && bytes.Equal(name, building)) {
			rep.add(0, string(name), "bucket without an index in the schema")
		}
		return nil
	})
}
