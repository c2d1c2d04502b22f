package lock

// May touch: /proc/locks and /proc/<pid> (read-only), and the record in <db>.lock through the locked descriptor.

// holders.go: who holds the lock: the record an exclusive holder writes into
// the lock file, /proc/locks, the queue at the gate (T15, T21).

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofrs/flock"
)

// Holder describes one process that holds, or waits for, a store's lock
// (psbase.LockHolder has the same fields).
type Holder struct {
	PID       int  // process ID, 0 when unknown
	Exclusive bool // exclusive (write) or shared (read)
	Waiting   bool // true: blocked waiting for the lock, not holding it
	// Gate: the entry is for the turnstile gate (<db>.gate), not the data
	// lock. A gate holder is the writer next in line: every process that
	// arrives after it waits behind it, so a stopped one blocks them all.
	Gate    bool
	Op      string    // the operation, when the holder recorded it
	Host    string    // the host name, when recorded
	Since   time.Time // when it took the lock, when recorded
	Command string    // the process's command line, when the OS tells
	// Lease: a remote store's name for the holder's session (etcd: its
	// lease ID in hex); empty for a local store.
	Lease string
}

func (h Holder) String() string {
	var b strings.Builder
	if h.PID > 0 {
		fmt.Fprintf(&b, "pid %d", h.PID)
	} else {
		b.WriteString("unknown process")
	}
	if h.Command != "" {
		fmt.Fprintf(&b, " (%s)", h.Command)
	}
	mode := "shared"
	if h.Exclusive {
		mode = "exclusive"
	}
	switch {
	case h.Gate && h.Waiting:
		b.WriteString(" waiting at the gate")
	case h.Gate:
		b.WriteString(" holding the gate (next writer in line)")
	case h.Waiting:
		fmt.Fprintf(&b, " waiting for %s", mode)
	default:
		fmt.Fprintf(&b, " holding %s", mode)
	}
	if h.Op != "" {
		fmt.Fprintf(&b, " for %s", h.Op)
	}
	if !h.Since.IsZero() {
		fmt.Fprintf(&b, " since %s", h.Since.Format(time.RFC3339Nano))
	}
	if h.Lease != "" {
		// A remote holder: its host matters (another machine's pid), and
		// its lease is what an operator revokes.
		if h.Host != "" {
			fmt.Fprintf(&b, " on %s", h.Host)
		}
		fmt.Fprintf(&b, " (lease %s)", h.Lease)
	}
	return b.String()
}

// recordDelay is how long an exclusive hold lasts before its holder
// record is written. Writing it on every acquisition cost a pwrite and two
// truncates of the lock file per operation — about 100 µs on a durable
// insert, as the lock file's metadata rides along with the database's
// fdatasync in the file system's journal. Holds shorter than this are gone
// before anyone could ask; on Linux /proc/locks names every holder's pid
// anyway. The record matters for the long holds: a stuck or stopped holder,
// a large transaction.
const recordDelay = 20 * time.Millisecond

// recordLater arranges for the holder record to be written if the exclusive
// hold is still on after recordDelay.
func (h *held) recordLater(l *File, op string, since time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.timer = time.AfterFunc(recordDelay, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if !h.done {
			h.writeRecord(l, op, since)
		}
	})
}

// writeRecord writes the holder record "pid=… host=… op=… since=…" into the
// lock file, only ever while holding it exclusively (T3, T15): pwrite then
// truncate to its length (a record left by a killed holder may be longer);
// no fsync, it is a diagnostic. gofrs/flock does not expose its descriptor,
// so the record goes through a second descriptor, opened without following
// links and checked (fstat) to be the file the lock is held on; closing it
// does not drop a flock, which belongs to the other description.
// Best effort: a failure is logged, never returned. h.mu is held.
func (h *held) writeRecord(l *File, op string, since time.Time) {
	rec := formatRecord(Holder{PID: os.Getpid(), Host: l.host, Op: op, Since: since, Exclusive: true})
	flags := os.O_WRONLY | openNoFollow
	if l.FollowLinks {
		flags = os.O_WRONLY
	}
	f, err := os.OpenFile(l.path, flags, 0)
	if err == nil && !l.FollowLinks {
		// Write only into the very file we hold locked (T18): whatever is
		// at the path now may be something else.
		var held, opened os.FileInfo
		if held, err = h.data.Stat(); err == nil {
			if opened, err = f.Stat(); err == nil && (!opened.Mode().IsRegular() || keyOf(l.path, opened) != keyOf(l.path, held)) {
				err = errStale
			}
		}
		if err != nil {
			_ = f.Close()
		}
	}
	if err == nil {
		if _, err = f.WriteAt(rec, recordOffset); err == nil {
			err = f.Truncate(recordOffset + int64(len(rec)))
		}
		if err != nil {
			_ = f.Close()
		} else {
			h.rec = f
		}
	}
	if err != nil && l.log != nil {
		l.log.Debug("psbase: lock holder record not written", "path", l.path, "err", err)
	}
}

// formatRecord renders the holder record: one line of key=value fields.
func formatRecord(h Holder) []byte {
	clean := func(s string) string {
		s = strings.Map(func(r rune) rune {
			if r <= ' ' || r == '=' || r == 0x7f {
				return '_'
			}
			return r
		}, s)
		if s == "" {
			s = "-"
		}
		return s
	}
	return fmt.Appendf(nil, "pid=%d host=%s op=%s since=%s\n",
		h.PID, clean(h.Host), clean(h.Op), h.Since.UTC().Format(time.RFC3339Nano))
}

// parseRecord parses a holder record; ok is false for an empty or foreign one.
func parseRecord(b []byte) (h Holder, ok bool) {
	b = bytes.Trim(b, "\x00 \t\r\n")
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	for _, field := range strings.Fields(string(b)) {
		k, v, found := strings.Cut(field, "=")
		if !found {
			return Holder{}, false
		}
		if v == "-" {
			v = ""
		}
		switch k {
		case "pid":
			pid, err := strconv.Atoi(v)
			if err != nil || pid <= 0 {
				return Holder{}, false
			}
			h.PID = pid
		case "host":
			h.Host = v
		case "op":
			h.Op = v
		case "since":
			t, err := time.Parse(time.RFC3339Nano, v)
			if err == nil {
				h.Since = t
			}
		}
	}
	if h.PID == 0 {
		return Holder{}, false
	}
	h.Exclusive = true
	return h, true
}

// Holders reports who holds and who waits for the lock file at lockPath
// right now, as psbase.LockHolders describes (which calls it with the
// resolved store path + ".lock"): on Linux /proc/locks with the command
// lines, the holder record merged in and the gate queue; elsewhere only the
// record, while some process holds the lock exclusively. A missing lock file
// has no holders; one that is not a regular file is an error wrapping
// ErrUnsafePath.
func Holders(lockPath string) ([]Holder, error) {
	fi, err := os.Lstat(lockPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: lock file %s is not a regular file (%s)", ErrUnsafePath, lockPath, fi.Mode().Type())
	}
	rec, haveRec := readRecord(lockPath)
	sys, ok := SystemHolders(fi)
	if !ok {
		if !haveRec || !heldExclusively(lockPath) {
			return nil, nil
		}
		return []Holder{rec}, nil
	}
	return mergeGateQueue(mergeRecord(sys, rec, haveRec), lockPath), nil
}

// mergeGateQueue adds the processes queued at the turnstile gate: a writer
// waits there until the writer before it is done, and every process in line
// behind a waiting writer waits there too. Each one not already listed for
// the data lock is listed with Gate set: holding the gate, or (Waiting)
// queued for it, always exclusively (readers pass the gate exclusively too,
// briefly).
func mergeGateQueue(holders []Holder, lockPath string) []Holder {
	gatePath := strings.TrimSuffix(lockPath, ".lock") + ".gate"
	gfi, err := os.Lstat(gatePath)
	if err != nil || !gfi.Mode().IsRegular() {
		return holders
	}
	gate, ok := SystemHolders(gfi)
	if !ok {
		return holders
	}
	for _, g := range gate {
		if g.PID > 0 && slices.ContainsFunc(holders, func(h Holder) bool { return h.PID == g.PID }) {
			continue // holds (or waits for) the data lock: already listed
		}
		// The one not waiting holds the gate: a writer next in line, which
		// everyone after it waits behind (stopped, it blocks them all, T21).
		g.Gate, g.Exclusive = true, true
		holders = append(holders, g)
	}
	return holders
}

// mergeRecord fills the recorded op, host and start time into the exclusive
// holder the OS reports. A record that matches no exclusive holder is stale
// (left by a killed holder) and dropped.
func mergeRecord(sys []Holder, rec Holder, haveRec bool) []Holder {
	if !haveRec {
		return sys
	}
	for i := range sys {
		h := &sys[i]
		if h.Waiting || !h.Exclusive || (h.PID > 0 && h.PID != rec.PID) {
			continue
		}
		if h.PID <= 0 { // pid not visible from our pid namespace
			h.PID = rec.PID
		}
		h.Op, h.Host, h.Since = rec.Op, rec.Host, rec.Since
		break
	}
	return sys
}

func readRecord(lockPath string) (Holder, bool) {
	f, err := os.OpenFile(lockPath, os.O_RDONLY|openNoFollow, 0)
	if err != nil {
		return Holder{}, false
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return Holder{}, false
	}
	buf := make([]byte, 512)
	n, err := f.ReadAt(buf, recordOffset)
	if err != nil && err != io.EOF {
		return Holder{}, false
	}
	return parseRecord(buf[:n])
}

// heldExclusively reports whether some process holds lockPath exclusively:
// a non-blocking shared try on a fresh descriptor fails. Used where the OS
// does not list lock holders, to tell a live record from a stale one.
func heldExclusively(lockPath string) bool {
	f := flock.New(lockPath, flock.SetFlag(os.O_RDONLY|openNoFollow))
	ok, err := tryLock(f, false)
	if err != nil {
		return true // cannot tell: show the record
	}
	if ok {
		_ = f.Unlock()
		return false
	}
	return true
}

// parseProcLocks returns the flock holders and waiters of the file with the
// given device (major:minor) and inode from the text of /proc/locks:
//
//	1: FLOCK  ADVISORY  WRITE 1234 08:01:131090 0 EOF
//	1: -> FLOCK  ADVISORY  WRITE 1235 08:01:131090 0 EOF
//
// The device numbers are hexadecimal, the inode decimal; a "->" line is a
// process blocked waiting. POSIX, OFD and lease entries are ignored.
func parseProcLocks(text []byte, major, minor uint32, ino uint64) []Holder {
	var out []Holder
	sc := bufio.NewScanner(bytes.NewReader(text))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 || !strings.HasSuffix(f[0], ":") {
			continue
		}
		f = f[1:]
		waiting := false
		if f[0] == "->" {
			waiting = true
			f = f[1:]
		}
		if len(f) < 5 || f[0] != "FLOCK" {
			continue
		}
		var exclusive bool
		switch f[2] {
		case "WRITE":
			exclusive = true
		case "READ":
		default:
			continue
		}
		pid, err := strconv.Atoi(f[3])
		if err != nil {
			continue
		}
		parts := strings.Split(f[4], ":")
		if len(parts) != 3 {
			continue
		}
		ma, err1 := strconv.ParseUint(parts[0], 16, 32)
		mi, err2 := strconv.ParseUint(parts[1], 16, 32)
		in, err3 := strconv.ParseUint(parts[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		if uint32(ma) != major || uint32(mi) != minor || in != ino {
			continue
		}
		if pid < 0 {
			pid = 0
		}
		h := Holder{PID: pid, Exclusive: exclusive, Waiting: waiting}
		// The kernel can list one lock twice for an instant while a waiter
		// is being queued; one process holds a lock file once (the
		// in-process lock sees to that), so identical entries are one.
		if !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}
