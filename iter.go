package psbase

// iter.go: iterators over query results — Tx.All inside a transaction, and
// Store.Scan from outside one, in pages under short shared locks.
//
// May touch: nothing but the transactions it runs (read-only).

import (
	"context"
	"iter"
)

// All returns the records matching q as an iterator, in q's order, without
// building the whole result first when q needs no in-memory sort (no
// OrderBy, or one an index serves). Use it inside View or Txn:
//
//	for rec, err := range tx.All(q) { ... }
//
// An error (a bad query, a damaged record, the context ending) is yielded
// once, last. Breaking out of the loop is fine.
func (tx *Tx) All(q Query) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		old, err := tx.enter(false)
		if err != nil {
			yield(Record{}, err)
			return
		}
		defer tx.exit(old, &err)
		cq, err := compileQuery(tx.sch, q)
		if err != nil {
			yield(Record{}, err)
			return
		}
		if len(cq.order) > 0 && !tx.indexOrdered(cq) {
			recs, err := tx.selectCompiled(cq)
			if err != nil {
				yield(Record{}, err)
				return
			}
			for _, r := range recs {
				if !callUser(func() bool { return yield(r, nil) }) {
					return
				}
			}
			return
		}
		skip, n := cq.q.Offset, 0
		err = tx.scan(cq, func(r Record) (bool, error) {
			if skip > 0 {
				skip--
				return true, nil
			}
			n++
			more := callUser(func() bool { return yield(cq.project1(r), nil) })
			return more && (cq.q.Limit == 0 || n < cq.q.Limit), nil
		})
		if err != nil {
			yield(Record{}, err)
		}
	}
}

// ScanPage is how many records Store.Scan reads under one shared lock.
const ScanPage = 512

// Scan streams the records matching q from outside a transaction: in ID
// order, in pages of ScanPage records each read under its own short shared
// lock, continuing after the last ID of the previous page (keyset
// continuation), so a long loop never blocks writers for long and page 1000
// costs what page 1 costs. It is not one snapshot: a record written between
// two pages appears if its ID is still ahead of the loop. q.OrderBy must be
// empty (use Select for a sorted result); Offset and Limit count over the
// whole stream; q.After starts the stream after that record's ID. Breaking
// out of the loop releases everything; an error is yielded once, last.
func (s *Store) Scan(ctx context.Context, q Query) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		if len(q.OrderBy) > 0 {
			yield(Record{}, wrapErr("scan", s.path, errorf(ErrSchema, "Scan streams in ID order: use Select for OrderBy")))
			return
		}
		var after uint64
		if q.After != nil {
			after = q.After.ID
		}
		skip, n := q.Offset, 0
		for {
			var page []Record
			var last uint64
			var exhausted bool
			err := s.run(ctx, "scan", false, func(tx *Tx) error {
				cq, err := compileQuery(tx.sch, Query{Where: q.Where, Match: q.Match, Fields: q.Fields})
				if err != nil {
					return err
				}
				last, exhausted, err = tx.scanFrom(cq, after, func(r Record) bool {
					page = append(page, cq.project1(r))
					return len(page) < ScanPage
				})
				return err
			})
			if err != nil {
				yield(Record{}, err)
				return
			}
			for _, r := range page {
				if skip > 0 {
					skip--
					continue
				}
				if !yield(r, nil) {
					return
				}
				if n++; q.Limit > 0 && n >= q.Limit {
					return
				}
			}
			if exhausted {
				return
			}
			after = last
		}
	}
}

// scanWalkMax bounds the records one page of Scan walks (matching or not),
// so that a sparse filter does not hold the lock over the whole table.
const scanWalkMax = 8 * ScanPage

// scanFrom walks the records bucket in ID order from the first ID after
// after, feeding fn every record matching cq until fn returns false or
// scanWalkMax records were walked. It returns the last ID walked and
// whether the walk reached the end of the table.
func (tx *Tx) scanFrom(cq *compiledQuery, after uint64, fn func(Record) bool) (last uint64, exhausted bool, err error) {
	if after == ^uint64(0) {
		return after, true, nil
	}
	c := tx.records.Cursor()
	n := 0
	for k, v := c.Seek(tx.lookupKey(max(after+1, cq.ids.lo))); k != nil; k, v = c.Next() {
		if err := tx.tick(&n); err != nil {
			return last, false, err
		}
		rec, err := tx.decodeAt(k, v, cq.decodeFields)
		if err != nil {
			return last, false, err
		}
		last = rec.ID
		if rec.ID > cq.ids.hi {
			return last, true, nil
		}
		if cq.accept(rec) {
			if !fn(rec) {
				return last, false, nil
			}
		}
		if n >= scanWalkMax {
			return last, false, nil
		}
	}
	return last, true, nil
}
