package psbase

// May touch: nothing but its Tx (read-only walks of its transaction).

import (
	"bytes"
	"math"
	"slices"

	"github.com/psbase/psbase/internal/kv"
)

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
		data := tx.records.Get(tx.lookupKey(id))
		if data == nil {
			return false, errorf(ErrCorrupt, "index %q points at missing record %d", p.field.Name, id)
		}
		tx.s.met.read(len(data))
		rec, err := decodeRecord(tx.sch, tx.format, id, data, cq.decodeFields)
		if err != nil {
			return false, err
		}
		return emit(rec)
	}
	c := b.Cursor()
	switch {
	case !p.ordered && (p.access != "eq" || cq.idDesc):
		// The result is in ID order unless the query sorts: gather the
		// IDs the ranges hold, then visit them sorted.
		var ids []uint64
		err := walkAsc(c, p, func(id uint64) (bool, error) {
			if cq.ids.match(id) {
				ids = append(ids, id)
			}
			return true, nil
		})
		if err != nil {
			return true, err
		}
		slices.Sort(ids)
		if cq.idDesc {
			slices.Reverse(ids)
		}
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
func walkAsc(c kv.Cursor, p *indexPlan, fn func(id uint64) (bool, error)) error {
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

// Count returns the number of records matching every filter.
func (tx *Tx) Count(where ...Filter) (n int, err error) {
	if len(where) == 0 {
		return tx.Len()
	}
	old, err := tx.enter(false)
	if err != nil {
		return 0, err
	}
	defer tx.exit(old, &err)
	cq, err := compileQuery(tx.sch, Query{Where: where})
	if err != nil {
		return 0, err
	}
	err = tx.scan(cq, func(Record) (bool, error) { n++; return true, nil })
	return n, err
}

// ForEach calls fn for every record in ID order, decoding one record at a
// time, so a table of any size is walked in constant memory. An error from
// fn stops the walk and is returned. fn runs under the store's lock.
func (tx *Tx) ForEach(fn func(Record) error) (err error) {
	old, err := tx.enter(false)
	if err != nil {
		return err
	}
	defer tx.exit(old, &err)
	c := tx.records.Cursor()
	n := 0
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if err := tx.tick(&n); err != nil {
			return err
		}
		rec, err := tx.decodeAt(k, v, nil)
		if err != nil {
			return err
		}
		if err := callUser(func() error { return fn(rec) }); err != nil {
			return err
		}
	}
	return nil
}

// Select returns the records matching q, with their ID and Version.
func (tx *Tx) Select(q Query) (recs []Record, err error) {
	old, err := tx.enter(false)
	if err != nil {
		return nil, err
	}
	defer tx.exit(old, &err)
	cq, err := compileQuery(tx.sch, q)
	if err != nil {
		return nil, err
	}
	return tx.selectCompiled(cq)
}

func (tx *Tx) selectCompiled(cq *compiledQuery) ([]Record, error) {
	var out []Record
	if len(cq.order) == 0 || tx.indexOrdered(cq) {
		// Stream: skip Offset, stop at Limit.
		skip := cq.q.Offset
		err := tx.scan(cq, func(r Record) (bool, error) {
			if skip > 0 {
				skip--
				return true, nil
			}
			out = append(out, cq.project1(r))
			return cq.q.Limit == 0 || len(out) < cq.q.Limit, nil
		})
		return out, err
	}
	err := tx.scan(cq, func(r Record) (bool, error) {
		out = append(out, r)
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	cq.sortRecords(out)
	if cq.q.Offset >= len(out) {
		return nil, nil
	}
	out = out[cq.q.Offset:]
	if cq.q.Limit > 0 && len(out) > cq.q.Limit {
		out = out[:cq.q.Limit]
	}
	for i := range out {
		out[i] = cq.project1(out[i])
	}
	return out, nil
}

// scan feeds fn every record matching cq, through an index when the planner
// finds one, else by walking the records bucket. fn returns false to stop.
func (tx *Tx) scan(cq *compiledQuery, fn func(Record) (bool, error)) error {
	n := 0
	emit := func(r Record) (bool, error) {
		if err := tx.tick(&n); err != nil {
			return false, err
		}
		if !cq.accept(r) {
			return true, nil
		}
		return fn(r)
	}
	if done, err := tx.indexScan(cq, emit); done || err != nil {
		return err
	}
	return tx.walkRecords(cq, emit)
}

// walkRecords feeds emit the records the query's ID bounds allow, in ID
// order (backwards for idDesc): by lookups for a set of IDs, else by a walk
// of the records bucket from the lowest allowed ID to the highest.
func (tx *Tx) walkRecords(cq *compiledQuery, emit func(Record) (bool, error)) error {
	b := &cq.ids
	if b.empty() {
		return nil
	}
	visit := func(k, v []byte) (bool, error) {
		rec, err := tx.decodeAt(k, v, cq.decodeFields)
		if err != nil {
			return false, err
		}
		return emit(rec)
	}
	if b.set != nil {
		ids := slices.Clone(b.set)
		if cq.idDesc {
			slices.Reverse(ids)
		}
		for _, id := range ids {
			k := idKey(id)
			v := tx.records.Get(k)
			if v == nil || !b.match(id) {
				continue
			}
			if more, err := visit(k, v); err != nil || !more {
				return err
			}
		}
		return nil
	}
	c := tx.records.Cursor()
	if !cq.idDesc {
		k, v := c.First()
		if b.lo > 0 {
			k, v = c.Seek(tx.lookupKey(b.lo))
		}
		for ; k != nil; k, v = c.Next() {
			if len(k) == 8 && u64(k) > b.hi {
				return nil
			}
			if more, err := visit(k, v); err != nil || !more {
				return err
			}
		}
		return nil
	}
	k, v := c.Last()
	if b.hi < math.MaxUint64 {
		if k, v = c.Seek(tx.lookupKey(b.hi + 1)); k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
	}
	for ; k != nil; k, v = c.Prev() {
		if len(k) == 8 && u64(k) < b.lo {
			return nil
		}
		if more, err := visit(k, v); err != nil || !more {
			return err
		}
	}
	return nil
}
