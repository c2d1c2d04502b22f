package psbase

// May touch: nothing itself: each method runs in a transaction of Store.run or Store.write.

import (
	"context"
	"os"
	"time"
)

// Upsert inserts v, or updates the record whose unique key field equals v's
// value of it, atomically under one exclusive lock: it is the cure for the
// check-then-insert race (two importers both see "no row" and both insert).
// key must have a unique index. It returns the record's ID and whether it
// was inserted.
func (s *Store) Upsert(ctx context.Context, key string, v any) (id uint64, inserted bool, err error) {
	var op *gcOp
	if vals, ok := gcValues(v); ok {
		op = &gcOp{kind: gcUpsert, key: key, vals: vals}
	}
	err = s.write(ctx, "upsert", op, func(tx *Tx) error {
		id, inserted, err = tx.Upsert(key, v)
		return err
	}, func(r *gcResult) { id, inserted = r.id, r.inserted })
	return id, inserted, err
}

// write runs one single-operation write: combined with other processes'
// writes into one commit when it can travel as data (group commit, see
// groupcommit.go and WithoutGroupCommit), otherwise as a transaction of its
// own. Either way it returns after its own write is durable, with its own
// result or error.
func (s *Store) write(ctx context.Context, name string, op *gcOp, direct func(*Tx) error, take func(*gcResult)) error {
	if op != nil && s.remote == nil {
		start := time.Now()
		res, err := s.submit(ctx, name, op)
		if err != errNotCombinable {
			if err == nil {
				take(res)
				err = res.err
			}
			err = wrapErr(name, s.path, err)
			s.done(ctx, name, start, 0, true, err)
			return err
		}
	}
	return s.run(ctx, name, true, direct)
}

// gcValues returns v's values if v can travel through group commit as it
// is (Values or a map; a struct takes the direct path).
func gcValues(v any) (Values, bool) {
	switch m := v.(type) {
	case Values:
		return m, m != nil
	case map[string]any:
		return Values(m), m != nil
	}
	return nil, false
}

// GetBy returns the record whose uniquely indexed field equals value, or
// ErrNotFound.
func (s *Store) GetBy(ctx context.Context, field string, value any) (rec Record, err error) {
	err = s.run(ctx, "get-by", false, func(tx *Tx) error {
		rec, err = tx.GetBy(field, value)
		return err
	})
	return rec, err
}

// Explain returns how Select would run q: through which index, or by a full
// scan.
func (s *Store) Explain(ctx context.Context, q Query) (plan Plan, err error) {
	err = s.run(ctx, "explain", false, func(tx *Tx) error {
		plan, err = tx.Explain(q)
		return err
	})
	return plan, err
}

// Insert adds one record in its own transaction and returns its ID.
func (s *Store) Insert(ctx context.Context, v any) (id uint64, err error) {
	var op *gcOp
	if vals, ok := gcValues(v); ok {
		op = &gcOp{kind: gcInsert, vals: vals}
	}
	err = s.write(ctx, "insert", op, func(tx *Tx) error {
		id, err = tx.Insert(v)
		return err
	}, func(r *gcResult) { id = r.id })
	return id, err
}

// Get returns the record with that ID, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id uint64) (rec Record, err error) {
	err = s.run(ctx, "get", false, func(tx *Tx) error {
		rec, err = tx.Get(id)
		return err
	})
	return rec, err
}

// Update applies changes to rec if nobody updated it since it was read (see
// Tx.Update): ErrConflict otherwise. It returns the record as now stored.
func (s *Store) Update(ctx context.Context, rec Record, changes any) (out Record, err error) {
	var op *gcOp
	if vals, ok := gcValues(changes); ok {
		op = &gcOp{kind: gcUpdate, id: rec.ID, version: rec.Version, vals: vals}
	}
	err = s.write(ctx, "update", op, func(tx *Tx) error {
		out, err = tx.Update(rec, changes)
		return err
	}, func(r *gcResult) { out = r.rec })
	return out, err
}

// UpdateByID applies changes to the record with that ID whatever its
// version (see Tx.UpdateByID) and returns the record as now stored.
func (s *Store) UpdateByID(ctx context.Context, id uint64, changes any) (out Record, err error) {
	var op *gcOp
	if vals, ok := gcValues(changes); ok {
		op = &gcOp{kind: gcUpdateByID, id: id, vals: vals}
	}
	err = s.write(ctx, "update", op, func(tx *Tx) error {
		out, err = tx.UpdateByID(id, changes)
		return err
	}, func(r *gcResult) { out = r.rec })
	return out, err
}

// Add adds delta to the Int field of record id and returns its new value,
// atomically across processes (see Tx.Add): the counter primitive, and
// what "psbase incr" runs.
func (s *Store) Add(ctx context.Context, id uint64, field string, delta int64) (v int64, err error) {
	err = s.write(ctx, "add", &gcOp{kind: gcAddInt, id: id, key: field, idelta: delta}, func(tx *Tx) error {
		v, err = tx.Add(id, field, delta)
		return err
	}, func(r *gcResult) { v = r.ival })
	return v, err
}

// AddFloat is Add for a Float field.
func (s *Store) AddFloat(ctx context.Context, id uint64, field string, delta float64) (v float64, err error) {
	err = s.write(ctx, "add", &gcOp{kind: gcAddFloat, id: id, key: field, fdelta: delta}, func(tx *Tx) error {
		v, err = tx.AddFloat(id, field, delta)
		return err
	}, func(r *gcResult) { v = r.fval })
	return v, err
}

// Delete removes the records with these IDs, all or none (ErrNotFound if one
// is missing), and returns how many it removed.
func (s *Store) Delete(ctx context.Context, ids ...uint64) (n int, err error) {
	err = s.write(ctx, "delete", &gcOp{kind: gcDelete, ids: ids}, func(tx *Tx) error {
		n, err = tx.Delete(ids...)
		return err
	}, func(r *gcResult) { n = r.n })
	return n, err
}

// Len returns the number of records.
func (s *Store) Len(ctx context.Context) (n int, err error) {
	err = s.run(ctx, "len", false, func(tx *Tx) error {
		n, err = tx.Len()
		return err
	})
	return n, err
}

// Count returns the number of records matching every filter.
func (s *Store) Count(ctx context.Context, where ...Filter) (n int, err error) {
	err = s.run(ctx, "count", false, func(tx *Tx) error {
		n, err = tx.Count(where...)
		return err
	})
	return n, err
}

// Select returns the records matching q (see Query).
func (s *Store) Select(ctx context.Context, q Query) (recs []Record, err error) {
	err = s.run(ctx, "select", false, func(tx *Tx) error {
		recs, err = tx.Select(q)
		return err
	})
	return recs, err
}

// ForEach calls fn for every record in ID order, in constant memory, under
// one shared lock (writers wait until it returns).
func (s *Store) ForEach(ctx context.Context, fn func(Record) error) error {
	return s.run(ctx, "foreach", false, func(tx *Tx) error { return tx.ForEach(fn) })
}

// Schema returns the table's fields in order.
func (s *Store) Schema(ctx context.Context) (fields []Field, err error) {
	err = s.run(ctx, "schema", false, func(tx *Tx) error {
		fields = tx.Schema()
		return nil
	})
	return fields, err
}

// Stats describes a store at one instant.
type Stats struct {
	Path          string        // the database file
	Records       int           // number of records
	FileSize      int64         // bytes on disk
	FormatVersion int           // on-disk format version
	Schema        []Field       // fields in order
	NextID        uint64        // the ID the next Insert gets
	LastLockWait  time.Duration // how long this handle's last lock acquisition waited
	Created       time.Time     // when the store was created
	WarmOpens     uint64        // how often this handle opened its kept read handle (at first, and after the file changed)
	WarmReads     uint64        // read transactions of this handle that reused the kept read handle
	// Group commit: the batches this handle's combiners committed and the
	// operations in them (theirs and other processes'); Ops/Batches is the
	// mean batch size.
	CombinedBatches uint64
	CombinedOps     uint64
	// The change feed (see Changes): the store's revision, and the oldest
	// revision Changes and Watch can continue from (the log's retention).
	// Both are 0 in a store of format 3 or older, which has no log yet.
	Revision       uint64
	OldestRevision uint64
}

// Stats returns the store's size, count and schema, under the shared lock.
func (s *Store) Stats(ctx context.Context) (st Stats, err error) {
	err = s.run(ctx, "stats", false, func(tx *Tx) error {
		st, err = tx.stats()
		return err
	})
	st.LastLockWait = time.Duration(s.lastWait.Load())
	st.WarmOpens, st.WarmReads = s.warm.stats()
	st.CombinedBatches, st.CombinedOps = s.gc.stats()
	return st, err
}

// stats reads what Stats reports; the lock is held, so the file's size is the
// size of the store as this transaction sees it.
func (tx *Tx) stats() (st Stats, err error) {
	old, err := tx.enter(false)
	if err != nil {
		return st, err
	}
	defer tx.exit(old, &err)
	st.Path = tx.s.path
	st.Records = int(u64(tx.meta.Get(keyCount)))
	st.FormatVersion = int(formatOf(tx.meta))
	st.Schema = tx.sch.public()
	st.NextID = tx.records.Sequence() + 1
	if fi, err := os.Stat(tx.s.path); err == nil {
		st.FileSize = fi.Size()
	}
	st.Created, _ = time.Parse(time.RFC3339Nano, string(tx.meta.Get(keyCreated)))
	st.Revision, st.OldestRevision = tx.Revision(), u64(tx.meta.Get(keyLogBase))
	return st, nil
}
