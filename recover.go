package psbase

// May touch: the damaged file, read-only (internal/boltwalk, under its shared lock), and the new store it creates.

// Recover: salvage the readable records of a damaged store into a new one.
// It reads the damaged file only through internal/boltwalk (never through
// bbolt, which may crash on it) and writes the new store through the
// ordinary record layer.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/psbase/psbase/internal/boltwalk"
)

// RecoverReport is the result of Recover: what was saved and what was lost.
type RecoverReport struct {
	Recovered int       // records written to the new store, with their IDs and versions
	Lost      []Problem // records that could not be read or written, and why
	Damage    []string  // the damage the page walk found (pages skipped, and why)
	NextID    uint64    // the ID sequence of the new store: no recovered or lost ID is reused
}

// OK reports whether nothing was lost: every record the file's pages hold
// was recovered, and no page was skipped.
func (r RecoverReport) OK() bool { return len(r.Lost) == 0 && len(r.Damage) == 0 }

// recoverBatch is how many records one transaction of the new store writes.
const recoverBatch = 5000

// Recover salvages every readable record of the store at damaged into a new
// store at out, for a store that Check finds damaged (and that Cleanup
// therefore refuses). The damaged file is never written: it is read under
// its shared lock by psbase's own bounded page walker, which skips damaged
// pages and goes on with the rest, so that no damage can crash or hang
// Recover. Each record's checksum is verified; a record that fails is
// listed in the report's Lost, as is every damaged page whose records could
// not be reached. The new store gets the damaged store's schema (fields,
// defaults, indexes), every readable record under its own ID and version,
// its indexes rebuilt, and an ID sequence past every ID seen, so no ID is
// ever handed out twice.
//
// out must not exist, unless WithOverwrite is given; with WithCreate the
// given fields are the schema to use when the damaged store's own schema
// cannot be read (it must then list the fields in the order they were
// added). The error is nil when the new store was written, even if records
// were lost: the report says what was. Records are written in batches, one
// transaction each; a failure part way leaves out partly written, to be
// recovered again with WithOverwrite.
func Recover(ctx context.Context, damaged, out string, opts ...Option) (RecoverReport, error) {
	var rep RecoverReport
	cfg := newConfig(opts)
	src, err := resolvePath(damaged)
	if err != nil {
		return rep, wrapErr("recover", damaged, err)
	}
	if _, err := os.Lstat(src); err != nil {
		return rep, wrapErr("recover", src, statStore(src))
	}
	dst, err := resolvePath(out)
	if err != nil {
		return rep, wrapErr("recover", out, err)
	}
	if dst == src {
		return rep, wrapErr("recover", out, errorf(ErrExists, "the new store cannot be the damaged one"))
	}
	s, err := newStore(src, cfg)
	if err != nil {
		return rep, wrapErr("recover", src, err)
	}
	var sal salvage
	if err := s.shared(ctx, "recover", func() error { return sal.read(s.path, cfg.create, &rep) }); err != nil {
		return rep, wrapErr("recover", src, err)
	}
	if err := sal.write(ctx, dst, opts, &rep); err != nil {
		return rep, wrapErr("recover", dst, err)
	}
	return rep, nil
}

// salvage is what Recover read from the damaged file.
type salvage struct {
	sch     *schema
	format  uint32
	records []Record
	seq     uint64 // the records bucket's sequence, or the highest ID seen
}

// read walks the damaged file at path; the lock is held.
func (sal *salvage) read(path string, fallback []Field, rep *RecoverReport) error {
	f, err := openStoreFile(path, os.O_RDONLY)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return classifyIOError(err)
	}
	size := fi.Size()
	damage := func(r *boltwalk.Report) {
		for _, p := range r.Problems {
			rep.Damage = append(rep.Damage, p.String())
		}
	}

	meta := map[string][]byte{}
	mr, err := boltwalk.Leaf(f, size, boltwalk.Limits{}, [][]byte{bucketMeta}, func(k, v []byte, isBucket bool) error {
		if !isBucket {
			meta[string(k)] = v
		}
		return nil
	})
	if mr != nil {
		damage(mr)
	}
	if err != nil && !errors.Is(err, boltwalk.ErrBucketNotFound) {
		return errorf(ErrCorrupt, "nothing can be read: %v", err)
	}
	sal.format = FormatVersion
	if b := meta[string(keyFormat)]; len(b) == 4 {
		sal.format = binary.BigEndian.Uint32(b)
	}
	if b := meta[string(keyMinRead)]; len(b) == 4 && binary.BigEndian.Uint32(b) > FormatVersion {
		return fmt.Errorf("%w: the store needs a psbase that reads format %d; this one reads up to %d", ErrNewerFormat, binary.BigEndian.Uint32(b), FormatVersion)
	}
	if sal.format < 1 || sal.format > FormatVersion {
		sal.format = FormatVersion // damaged: try what this version writes
	}
	if sal.sch, err = decodeSchema(meta[string(keySchema)]); err != nil {
		if fallback == nil {
			return errorf(ErrCorrupt, "the schema cannot be read (%v): give the fields with WithCreate", err)
		}
		if sal.sch, err = newSchema(fallback); err != nil {
			return err
		}
		rep.Damage = append(rep.Damage, "schema unreadable; the fields given with WithCreate were used")
	}

	rr, err := boltwalk.Leaf(f, size, boltwalk.Limits{}, [][]byte{bucketRecords}, func(k, v []byte, isBucket bool) error {
		if isBucket || len(k) != 8 {
			rep.Lost = append(rep.Lost, Problem{What: fmt.Sprintf("a key %x that is not a record ID", k)})
			return nil
		}
		id := u64(k)
		sal.seq = max(sal.seq, id)
		rec, err := decodeRecord(sal.sch, sal.format, id, v, nil)
		if err != nil && sal.format != 1 {
			// A record written before its store's upgrade? (No: Cleanup
			// rewrites them all.) A damaged format key: try format 1.
			if r1, err1 := decodeRecord(sal.sch, 1, id, v, nil); err1 == nil {
				rec, err = r1, nil
			}
		}
		if err != nil {
			rep.Lost = append(rep.Lost, Problem{ID: id, What: err.Error()})
			return nil
		}
		sal.records = append(sal.records, rec)
		return nil
	})
	if rr != nil {
		damage(rr)
		sal.seq = max(sal.seq, rr.Sequence)
	}
	if err != nil && !errors.Is(err, boltwalk.ErrBucketNotFound) {
		return errorf(ErrCorrupt, "the records cannot be read: %v", err)
	}
	return nil
}

// write creates the new store at path and writes the salvaged records.
func (sal *salvage) write(ctx context.Context, path string, opts []Option, rep *RecoverReport) error {
	// Indexes are rebuilt as records go in: declare them on the fields.
	fields := sal.sch.public()
	s, err := Create(ctx, path, fields, opts...)
	if err != nil {
		return err
	}
	defer s.Close()
	for start := 0; start < len(sal.records); start += recoverBatch {
		batch := sal.records[start:min(start+recoverBatch, len(sal.records))]
		var lost []Problem
		err := s.Txn(ctx, func(tx *Tx) error {
			lost = lost[:0]
			for _, rec := range batch {
				if err := ctx.Err(); err != nil {
					return err
				}
				err := tx.restore(rec)
				if errors.Is(err, ErrDuplicate) || errors.Is(err, ErrSchema) {
					lost = append(lost, Problem{ID: rec.ID, What: err.Error()})
					continue
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		rep.Lost = append(rep.Lost, lost...)
		rep.Recovered += len(batch) - len(lost)
	}
	rep.NextID = sal.seq
	for _, p := range rep.Lost {
		rep.NextID = max(rep.NextID, p.ID)
	}
	return s.Txn(ctx, func(tx *Tx) error { return tx.records.SetSequence(rep.NextID) })
}

// restore writes rec under its own ID and version into an empty slot (Recover).
// It refuses, before writing, what the store's unique indexes or its schema
// would refuse.
func (tx *Tx) restore(rec Record) error {
	if tx.records.Get(tx.lookupKey(rec.ID)) != nil {
		return errorf(ErrDuplicate, "record %d twice", rec.ID)
	}
	vals, err := tx.prepare(rec.Values, false)
	if err != nil {
		return err
	}
	if err := tx.indexCheckUnique(0, vals); err != nil {
		return err
	}
	data, err := encodeRecord(tx.sch, tx.format, rec.ID, max(rec.Version, 1), vals)
	if err != nil {
		return err
	}
	if err := tx.records.Put(idKey(rec.ID), data); err != nil {
		return err
	}
	if err := tx.addCount(1); err != nil {
		return err
	}
	return tx.indexAdd(rec.ID, vals)
}
