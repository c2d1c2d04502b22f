package psbase

import (
	"bytes"
	"slices"

	bolt "go.etcd.io/bbolt"
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
func (tx *Tx) indexBucket(field string) (*bolt.Bucket, error) {
	root := tx.btx.Bucket(bucketIndexes)
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
func (tx *Tx) indexCheckUnique(id uint64, vals Values) error {
	for i := range tx.sch.Indexes {
		ix := &tx.sch.Indexes[i]
		if !ix.Unique {
			continue
		}
		v := vals[ix.Field]
		if v == nil {
			continue
		}
		f, err := tx.sch.field(ix.Field)
		if err != nil {
			return err
		}
		b, err := tx.indexBucket(ix.Field)
		if err != nil {
			return err
		}
		if other, ok := firstWithPrefix(b, orderKey(nil, f.Type, v)); ok && other != id {
			return errorf(ErrDuplicate, "field %q value %s is already used by record %d", ix.Field, shortValue(v), other)
		}
	}
	return nil
}

// firstWithPrefix returns the ID of the first entry whose value is exactly
// the one encoded by vk.
func firstWithPrefix(b *bolt.Bucket, vk []byte) (uint64, bool) {
	k, _ := b.Cursor().Seek(vk)
	if k != nil && len(k) == len(vk)+8 && bytes.HasPrefix(k, vk) {
		return u64(k[len(vk):]), true
	}
	return 0, false
}

func (tx *Tx) indexAdd(id uint64, vals Values) error {
	return tx.eachIndex(func(b *bolt.Bucket, f *fieldDef) error {
		return b.Put(entryKey(f, vals[f.Name], id), []byte{})
	})
}

func (tx *Tx) indexRemove(id uint64, vals Values) error {
	return tx.eachIndex(func(b *bolt.Bucket, f *fieldDef) error {
		return b.Delete(entryKey(f, vals[f.Name], id))
	})
}

func (tx *Tx) indexReplace(id uint64, old, new Values) error {
	return tx.eachIndex(func(b *bolt.Bucket, f *fieldDef) error {
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

func (tx *Tx) eachIndex(fn func(*bolt.Bucket, *fieldDef) error) error {
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

// progressEvery is how many records CreateIndex indexes between progress calls.
const progressEvery = 1000

// createIndex builds the index on field from every record.
func (tx *Tx) createIndex(field string, unique bool, progress func(done, total int)) error {
	if err := tx.check(true); err != nil {
		return err
	}
	f, err := tx.sch.field(field)
	if err != nil {
		return err
	}
	if tx.sch.index(field) != nil {
		return errorf(ErrSchema, "field %q is already indexed", field)
	}
	root := tx.btx.Bucket(bucketIndexes)
	if root.Bucket([]byte(field)) != nil {
		if err := root.DeleteBucket([]byte(field)); err != nil { // a leftover
			return err
		}
	}
	b, err := root.CreateBucket([]byte(field))
	if err != nil {
		return err
	}
	// Gather every entry, sort, then put them in key order: bbolt splits
	// nodes only at commit, so puts in random order inside one large
	// transaction memmove an ever larger leaf (quadratic); appends do not.
	total := int(u64(tx.meta.Get(keyCount)))
	keys := make([][]byte, 0, total)
	only := map[string]bool{field: true}
	c := tx.records.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		rec, err := tx.decodeAt(k, v, only)
		if err != nil {
			return err
		}
		keys = append(keys, entryKey(f, rec.Values[field], rec.ID))
		if progress != nil && len(keys)%progressEvery == 0 {
			callUser(func() int { progress(len(keys), total); return 0 })
		}
	}
	slices.SortFunc(keys, bytes.Compare)
	for i, k := range keys {
		if unique && i > 0 && k[0] != keyNull && bytes.Equal(k[:len(k)-8], keys[i-1][:len(keys[i-1])-8]) {
			return errorf(ErrDuplicate, "cannot build unique index on %q: records %d and %d hold the same value",
				field, u64(keys[i-1][len(keys[i-1])-8:]), u64(k[len(k)-8:]))
		}
		if err := b.Put(k, []byte{}); err != nil {
			return err
		}
	}
	if progress != nil {
		callUser(func() int { progress(len(keys), total); return 0 })
	}
	sch := tx.sch.clone()
	sch.Indexes = append(sch.Indexes, indexDef{Field: field, Num: f.Num, Unique: unique})
	tx.setSchema(sch)
	return nil
}

// dropIndex removes the index on field.
func (tx *Tx) dropIndex(field string) error {
	if err := tx.check(true); err != nil {
		return err
	}
	if tx.sch.index(field) == nil {
		return errorf(ErrSchema, "field %q has no index", field)
	}
	root := tx.btx.Bucket(bucketIndexes)
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

// Upsert inserts v, or updates the record whose unique key field holds v's
// value of it (see Store.Upsert). On update, fields v does not give keep
// their values.
func (tx *Tx) Upsert(key string, v any) (id uint64, inserted bool, err error) {
	defer guardPanic(&err)
	if err := tx.check(true); err != nil {
		return 0, false, err
	}
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
	defer guardPanic(&err)
	if err := tx.check(false); err != nil {
		return Record{}, err
	}
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

// Explain returns how Select would run q.
func (tx *Tx) Explain(q Query) (Plan, error) {
	if err := tx.check(false); err != nil {
		return Plan{}, err
	}
	cq, err := compileQuery(tx.sch, q)
	if err != nil {
		return Plan{}, err
	}
	p := tx.planQuery(cq)
	if p == nil {
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
	if len(cq.order) == 1 && tx.sch.index(cq.order[0].Name) != nil {
		of := cq.order[0]
		desc := cq.q.OrderBy[0].Desc
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

// indexScan feeds emit the records the plan's index points at (emit applies
// every filter again); it returns false when there is no plan.
func (tx *Tx) indexScan(cq *compiledQuery, emit func(Record) (bool, error)) (bool, error) {
	p := tx.planQuery(cq)
	if p == nil {
		return false, nil
	}
	b, err := tx.indexBucket(p.field.Name)
	if err != nil {
		return true, err
	}
	visit := func(id uint64) (bool, error) {
		data := tx.records.Get(idKey(id))
		if data == nil {
			return false, errorf(ErrCorrupt, "index %q points at missing record %d", p.field.Name, id)
		}
		rec, err := decodeRecord(tx.sch, id, data, cq.decodeFields)
		if err != nil {
			return false, err
		}
		return emit(rec)
	}
	c := b.Cursor()
	switch {
	case !p.ordered && p.access != "eq":
		// The result is in ID order unless the query sorts: gather the
		// IDs the ranges hold, then visit them sorted.
		var ids []uint64
		err := walkAsc(c, p, func(id uint64) (bool, error) { ids = append(ids, id); return true, nil })
		if err != nil {
			return true, err
		}
		slices.Sort(ids)
		for _, id := range ids {
			if more, err := visit(id); err != nil || !more {
				return true, err
			}
		}
		return true, nil
	case !p.desc:
		return true, walkAsc(c, p, visit)
	}
	// Backwards: equal values still come out in ascending ID order (the
	// tie order of every Select), so collect each run of equal values and
	// emit it reversed.
	for i := len(p.ranges) - 1; i >= 0; i-- {
		r := p.ranges[i]
		var k []byte
		if r.hi == nil {
			k, _ = c.Last()
		} else if k, _ = c.Seek(r.hi); k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
		var run []uint64
		var runVal []byte
		flush := func() (bool, error) {
			for j := len(run) - 1; j >= 0; j-- {
				if more, err := visit(run[j]); err != nil || !more {
					return false, err
				}
			}
			run = run[:0]
			return true, nil
		}
		for ; k != nil && (r.lo == nil || bytes.Compare(k, r.lo) >= 0); k, _ = c.Prev() {
			if len(k) < 9 {
				return true, errorf(ErrCorrupt, "index %q has a short key %x", p.field.Name, k)
			}
			val := k[:len(k)-8]
			if runVal != nil && !bytes.Equal(val, runVal) {
				if more, err := flush(); err != nil || !more {
					return true, err
				}
			}
			runVal = append(runVal[:0], val...)
			run = append(run, u64(k[len(k)-8:]))
		}
		if more, err := flush(); err != nil || !more {
			return true, err
		}
	}
	return true, nil
}

// walkAsc calls fn with the ID of every entry in the plan's ranges, in key
// order, until fn returns false.
func walkAsc(c *bolt.Cursor, p *indexPlan, fn func(id uint64) (bool, error)) error {
	for _, r := range p.ranges {
		var k []byte
		if r.lo == nil {
			k, _ = c.First()
		} else {
			k, _ = c.Seek(r.lo)
		}
		for ; k != nil && (r.hi == nil || bytes.Compare(k, r.hi) < 0); k, _ = c.Next() {
			if len(k) < 9 {
				return errorf(ErrCorrupt, "index %q has a short key %x", p.field.Name, k)
			}
			if more, err := fn(u64(k[len(k)-8:])); err != nil || !more {
				return err
			}
		}
	}
	return nil
}

// checkIndexes verifies every index against the records: one entry per
// record with the right value, no entry for a missing record, no duplicate
// under a unique index, no stray index bucket.
func (s *Store) checkIndexes(btx *bolt.Tx, sch *schema, rep *CheckReport) {
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
			rec, err := decodeRecord(sch, u64(k), v, only)
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
			} else if rec, err := decodeRecord(sch, id, data, only); err == nil {
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
	_ = root.ForEachBucket(func(name []byte) error {
		if !known[string(name)] {
			rep.add(0, string(name), "bucket without an index in the schema")
		}
		return nil
	})
}
