package psbase

import (
	"context"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// Problem is one inconsistency found by Check.
type Problem struct {
	ID    uint64 // the record concerned, 0 if none
	Index string // the index concerned, "" if none
	What  string // what is wrong
}

func (p Problem) String() string {
	var b strings.Builder
	if p.ID != 0 {
		fmt.Fprintf(&b, "record %d: ", p.ID)
	}
	if p.Index != "" {
		fmt.Fprintf(&b, "index %s: ", p.Index)
	}
	b.WriteString(p.What)
	return b.String()
}

// CheckReport is the result of Check: every problem found, not just the first.
type CheckReport struct {
	Records  int       // records scanned
	Indexes  int       // indexes verified
	Problems []Problem // empty when the store is sound
}

// OK reports whether no problem was found.
func (r CheckReport) OK() bool { return len(r.Problems) == 0 }

// maxProblems bounds the report on a badly damaged file.
const maxProblems = 1000

func (r *CheckReport) add(id uint64, index, format string, args ...any) {
	if len(r.Problems) < maxProblems {
		r.Problems = append(r.Problems, Problem{ID: id, Index: index, What: fmt.Sprintf(format, args...)})
	}
}

// Check verifies the whole store under the shared lock: bbolt's own
// consistency check of every page, the meta bucket and schema, the CRC32C
// and decoding of every record, the record count, the ID sequence and every
// index against the records. It reports every problem it finds; the error
// wraps ErrCorrupt when there is any (and is an I/O or lock error when the
// check could not run). A corrupt file cannot crash the process: bbolt
// panics and memory faults are caught and reported as problems.
func (s *Store) Check(ctx context.Context) (CheckReport, error) {
	var rep CheckReport
	release, err := s.acquire(ctx, "check", false)
	if err != nil {
		return rep, wrapErr("check", s.path, err)
	}
	defer release()
	db, err := s.openBolt(false)
	if err != nil {
		return rep, wrapErr("check", s.path, err)
	}
	defer db.Close()
	err = withFaultGuard(func() error {
		return db.View(func(btx *bolt.Tx) error {
			s.checkTx(btx, &rep)
			return nil
		})
	})
	if err != nil {
		rep.add(0, "", "%v", err)
	}
	if !rep.OK() {
		return rep, wrapErr("check", s.path, errorf(ErrCorrupt, "%d problem(s), first: %s", len(rep.Problems), rep.Problems[0]))
	}
	return rep, nil
}

func (s *Store) checkTx(btx *bolt.Tx, rep *CheckReport) {
	// bbolt's page-level check (freelist, page references, ordering).
	func() {
		defer func() {
			if p := recover(); p != nil {
				rep.add(0, "", "bbolt check crashed: %v", p)
			}
		}()
		for err := range btx.Check() {
			rep.add(0, "", "bbolt: %v", err)
		}
	}()
	if err := checkFormat(btx); err != nil {
		rep.add(0, "", "%v", err)
		return
	}
	meta := btx.Bucket(bucketMeta)
	sch, err := decodeSchema(meta.Get(keySchema))
	if err != nil {
		rep.add(0, "", "%v", err)
		return
	}
	records := btx.Bucket(bucketRecords)
	var maxID uint64
	func() {
		defer func() {
			if p := recover(); p != nil {
				rep.add(0, "", "walking records crashed: %v", p)
			}
		}()
		c := records.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(k) != 8 {
				rep.add(0, "", "record key %x is not 8 bytes", k)
				continue
			}
			id := u64(k)
			rep.Records++
			maxID = max(maxID, id)
			if v == nil {
				rep.add(id, "", "is a bucket, not a value")
				continue
			}
			if _, err := decodeRecord(sch, id, v, nil); err != nil {
				rep.add(id, "", "%s", recordCause(err, id))
			}
		}
	}()
	if n := int(u64(meta.Get(keyCount))); n != rep.Records {
		rep.add(0, "", "meta count says %d records, found %d", n, rep.Records)
	}
	if seq := records.Sequence(); seq < maxID {
		rep.add(0, "", "ID sequence %d is below the largest ID %d (IDs would be reused)", seq, maxID)
	}
	s.checkIndexes(btx, sch, rep)
}

// recordCause trims "store is corrupt: record N: " from a record's error,
// since a Problem names the record itself.
func recordCause(err error, id uint64) string {
	msg := strings.TrimPrefix(err.Error(), ErrCorrupt.Error()+": ")
	return strings.TrimPrefix(msg, fmt.Sprintf("record %d: ", id))
}
