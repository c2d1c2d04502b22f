package psbase

// May touch: the database file, read-only (through internal/boltwalk, then bbolt on a sound file), under the shared lock.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/psbase/psbase/internal/boltkv"
	"github.com/psbase/psbase/internal/boltwalk"
	"github.com/psbase/psbase/internal/kv"
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

// Check verifies the whole store under the shared lock: every page of the
// file, walked by psbase's own bounded reader (so that no damage can crash
// or hang the check), then, on a file whose pages are sound, bbolt's own
// consistency check, the meta bucket and schema, the CRC32C
// and decoding of every record, the record count, the ID sequence and every
// index against the records. It reports every problem it finds; the error
// wraps ErrCorrupt when there is any (and is an I/O or lock error when the
// check could not run). No file can crash or hang Check: the page walk
// comes first and is bounded, bbolt only reads a file whose pages passed it,
// and a bbolt panic or memory fault after that is caught and reported.
func (s *Store) Check(ctx context.Context) (CheckReport, error) {
	var rep CheckReport
	var err error
	if s.remote != nil {
		err = s.checkRemote(ctx, &rep)
	} else {
		err = s.shared(ctx, "check", func() error {
			_, err := s.checkFile(&rep, false)
			return err
		})
	}
	if err != nil && (!errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNewerFormat)) {
		return rep, wrapErr("check", s.path, err)
	}
	if err != nil {
		rep.add(0, "", "%v", err)
	}
	if !rep.OK() {
		return rep, wrapErr("check", s.path, errorf(ErrCorrupt, "%d problem(s), first: %s", len(rep.Problems), rep.Problems[0]))
	}
	return rep, nil
}

// checkFile checks the store's file; the lock is held. First psbase's own
// page walk (internal/boltwalk: it reads the file with ReadAt, never maps
// it, never recurses, and bounds what it allocates), and only on a file
// whose pages are sound bbolt's view: bbolt's check and the logical check.
// bbolt must not walk a damaged tree: a cycle recurses in its cursor until
// the stack overflows, a wild page id faults in its check goroutine, and
// neither can be recovered. With write, the format must be writable too;
// the format is returned.
func (s *Store) checkFile(rep *CheckReport, write bool) (format uint32, err error) {
	f, err := openStoreFile(s.path, os.O_RDONLY)
	if err != nil {
		return 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return 0, classifyIOError(err)
	}
	wr := boltwalk.Check(f, fi.Size(), boltwalk.Limits{})
	f.Close()
	for _, p := range wr.Problems {
		rep.add(0, "", "file: %s", p)
	}
	if wr.Truncated {
		rep.add(0, "", "file: more damage than listed")
	}
	if !wr.OK() {
		return 0, nil
	}
	h, err := s.openBolt(false)
	if err != nil {
		return 0, err
	}
	err = h.view(func(kt kv.Tx) error {
		var err error
		if format, err = checkFormat(kt, write); errors.Is(err, ErrNewerFormat) {
			return err
		}
		checkPages(kt, rep)
		return checkLogical(kt, rep)
	})
	if err != nil && !errors.Is(err, ErrNewerFormat) && errors.Is(err, ErrCorrupt) {
		rep.add(0, "", "%v", err)
		err = nil
	}
	return format, err
}

// checkPages runs bbolt's page-level check of the local backend's file.
func checkPages(kt kv.Tx, rep *CheckReport) {
	bt, ok := kt.(boltkv.Tx)
	if !ok {
		return
	}
	for err := range bt.BTx.Check() {
		rep.add(0, "", "bbolt: %v", err)
	}
}

// checkLogical checks what the record layer keeps: the meta, the schema,
// every record's CRC and decoding, the count, the sequence and the indexes.
// A store of a newer format is not damage: that is its error, not a problem.
func checkLogical(btx kv.Tx, rep *CheckReport) error {
	format, err := checkFormat(btx, false)
	if errors.Is(err, ErrNewerFormat) {
		return err
	}
	if err != nil {
		rep.add(0, "", "%v", err)
		return nil
	}
	meta := btx.Bucket(bucketMeta)
	sch, err := decodeSchema(meta.Get(keySchema))
	if err != nil {
		rep.add(0, "", "%v", err)
		return nil
	}
	records := btx.Bucket(bucketRecords)
	var maxID uint64
	{
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
			if _, err := decodeRecord(sch, format, id, v, nil); err != nil {
				rep.add(id, "", "%s", recordCause(err, id))
			}
		}
	}
	if n := int(u64(meta.Get(keyCount))); n != rep.Records {
		rep.add(0, "", "meta count says %d records, found %d", n, rep.Records)
	}
	if seq := records.Sequence(); seq < maxID {
		rep.add(0, "", "ID sequence %d is below the largest ID %d (IDs would be reused)", seq, maxID)
	}
	checkIndexes(btx, sch, format, rep)
	checkRequests(btx, rep)
	checkChanges(btx, rep)
	return nil
}

// checkRequests checks group commit's idempotency records (format 3): each
// a queue ID and slot, and a request ID with a result that decodes.
func checkRequests(btx kv.Tx, rep *CheckReport) {
	reqs := btx.Bucket(bucketRequests)
	if reqs == nil {
		return
	}
	c := reqs.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(k) != 18 || len(v) < 16 {
			rep.add(0, "", "group-commit record %x: wrong size (key %d, value %d bytes)", k, len(k), len(v))
			continue
		}
		if _, err := decodeResult(v[16:]); err != nil {
			rep.add(0, "", "group-commit record %x: the result does not decode", k)
		}
	}
}

// recordCause trims "store is corrupt: record N: " from a record's error,
// since a Problem names the record itself.
func recordCause(err error, id uint64) string {
	msg := strings.TrimPrefix(err.Error(), ErrCorrupt.Error()+": ")
	return strings.TrimPrefix(msg, fmt.Sprintf("record %d: ", id))
}
