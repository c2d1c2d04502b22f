package psbase

import (
	"context"
	"fmt"
)

// CreateIndex builds a secondary index on field, under the exclusive lock in
// one transaction: either the whole index exists afterwards or none of it.
// With unique, a second record with the same value is refused with
// ErrDuplicate (nulls are not indexed, so any number of records may hold
// null in a unique field). progress, if not nil, is called as records are
// indexed (done of total). Building fails with ErrDuplicate, changing
// nothing, when existing records already violate uniqueness.
func (s *Store) CreateIndex(ctx context.Context, field string, unique bool, progress func(done, total int)) error {
	return s.run(ctx, "create-index", true, func(tx *Tx) error {
		return tx.createIndex(field, unique, progress)
	})
}

// DropIndex removes the index on field.
func (s *Store) DropIndex(ctx context.Context, field string) error {
	return s.run(ctx, "drop-index", true, func(tx *Tx) error { return tx.dropIndex(field) })
}

// Upsert inserts v, or updates the record whose unique key field equals v's
// value of it, atomically under one exclusive lock: it is the cure for the
// check-then-insert race (two importers both see "no row" and both insert).
// key must have a unique index. It returns the record's ID and whether it
// was inserted.
func (s *Store) Upsert(ctx context.Context, key string, v any) (id uint64, inserted bool, err error) {
	err = s.run(ctx, "upsert", true, func(tx *Tx) error {
		id, inserted, err = tx.Upsert(key, v)
		return err
	})
	return id, inserted, err
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

// Plan says how a query runs.
type Plan struct {
	// Index is the indexed field used, "" for a full scan of the records.
	Index string
	// Access is "scan" (every record), "eq", "in", "range", "prefix" (index
	// lookups), or "order" (walking the index in sort order, stopping at the
	// limit).
	Access string
	// Ordered is true when the index also yields the requested order, so no
	// sort is needed and a Limit stops the walk early.
	Ordered bool
}

func (p Plan) String() string {
	if p.Index == "" {
		return "full scan"
	}
	s := fmt.Sprintf("index %s (%s)", p.Index, p.Access)
	if p.Ordered {
		s += ", in index order"
	}
	return s
}
