//go:build linux

package psbase

// gcq_linux.go: the group-commit queue file, <db>.gcq (see groupcommit.go
// for the protocol). A header and fixed slots, mapped MAP_SHARED by every
// process that writes the store. Coordination state only: it is never
// fsynced, a different boot ID means every slot is reset (under the store's
// exclusive lock) before anyone combines, and a damaged or forged file can
// at worst make an operation take the direct path or report an error: every
// length read from it is bounded, every access to the mapping is guarded
// (a file truncated under the mapping faults, which is recovered), and the
// file obeys the lock files' rules (never followed, a regular file with one
// name, owned by the store's owner, the caller or root).
//
// May touch: <db>.gcq only.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Layout. All integers little-endian (the platforms psbase runs on);
// state words are accessed atomically.
const (
	gcqMagic    = "PSBGCQ\x00\x01"
	gcqVersion  = 1
	gcqSlots    = 256
	gcqSlotSize = 2048
	gcqHeader   = 4096
	gcqSize     = gcqHeader + gcqSlots*gcqSlotSize

	// header
	hMagic    = 0  // [8]byte
	hVersion  = 8  // u32
	hSlots    = 12 // u32
	hSlotSize = 16 // u32
	hBoot     = 24 // [16]byte: the boot the slots belong to
	hQueueID  = 40 // [16]byte: this queue's identity (idempotency keys)
	hSeq      = 56 // u32 futex word: bumped after every batch's results

	// slot
	sState   = 0  // u32: gcFree, gcSubmitted, gcTaken, gcDone
	sTakenBy = 4  // u32: pid of the combiner that took it
	sLen     = 8  // u32: bytes of payload (submitted) or result (done)
	sReqID   = 16 // [16]byte: the request
	sData    = 64

	gcPayloadMax = gcqSlotSize - sData

	// maxOwnedSlots bounds the slots one Store holds (one per goroutine
	// waiting at once); more concurrent writers take the direct path.
	maxOwnedSlots = 32
)

// Slot states.
const (
	gcFree uint32 = iota
	gcSubmitted
	gcTaken
	gcDone
)

// gcQueue is one open, mapped queue file.
type gcQueue struct {
	path string
	f    *os.File
	mem  []byte
	qid  [16]byte

	mu    sync.Mutex
	owned map[int]bool // slots whose OFD lock this queue holds; true while in use

	broken atomic.Bool // the mapping faulted: use it no more
}

// bootID is this boot's identity (slots of another boot are stale).
func bootID() ([16]byte, bool) {
	var id [16]byte
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return id, false
	}
	b = bytes.ReplaceAll(bytes.TrimSpace(b), []byte("-"), nil)
	if len(b) != 32 {
		return id, false
	}
	for i := range id {
		var v byte
		for _, c := range b[2*i : 2*i+2] {
			switch {
			case c >= '0' && c <= '9':
				v = v<<4 | (c - '0')
			case c >= 'a' && c <= 'f':
				v = v<<4 | (c - 'a' + 10)
			default:
				return id, false
			}
		}
		id[i] = v
	}
	return id, true
}

// openQueue opens and maps the queue beside the store. Without create
// (a submitter, no lock held) it returns nil unless a queue of this boot
// is ready. With create (the store's exclusive lock held) it makes one, or
// resets one that is stale, damaged or of another boot. dbUID is the
// database file's owner.
func openQueue(dbPath string, dbUID int, mode os.FileMode, create bool) (*gcQueue, error) {
	path := dbPath + suffixQueue
	flag := os.O_RDWR | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC
	if create {
		flag |= os.O_CREATE
	}
	f, err := os.OpenFile(path, flag, mode)
	if err != nil {
		if !create && errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if isLoop(err) {
			return nil, fmt.Errorf("%w: %s is a symbolic link", ErrUnsafePath, path)
		}
		return nil, classifyPathError(path, err)
	}
	q := &gcQueue{path: path, f: f, owned: map[int]bool{}}
	ok := false
	defer func() {
		if !ok {
			q.close()
		}
	}()
	fi, err := f.Stat()
	if err != nil {
		return nil, classifyIOError(err)
	}
	if err := checkQueueFile(path, fi, dbUID); err != nil {
		return nil, err
	}
	if fi.Size() < gcqSize {
		if !create {
			return nil, nil
		}
		if err := f.Truncate(gcqSize); err != nil {
			return nil, classifyIOError(err)
		}
	}
	q.mem, err = unix.Mmap(int(f.Fd()), 0, gcqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, classifyIOError(err)
	}
	boot, haveBoot := bootID()
	if !haveBoot {
		return nil, nil // no way to tell stale slots: group commit off
	}
	valid := false
	if !q.safely(func() { valid = q.headerValid(boot) }) {
		return nil, errorf(ErrCorrupt, "%s faulted while reading its header", path)
	}
	if !valid {
		if !create {
			return nil, nil
		}
		if !q.safely(func() { q.reset(boot) }) {
			return nil, errorf(ErrCorrupt, "%s faulted while resetting it", path)
		}
	}
	q.safely(func() { copy(q.qid[:], q.mem[hQueueID:hQueueID+16]) })
	ok = true
	return q, nil
}

// makeQueue creates a fresh queue file beside an existing store, without
// the store's lock: it is built complete in an anonymous file (O_TMPFILE)
// and linked into place, which fails if one is there already. A fresh
// queue has every slot free, so no lock holder needs to reset it; the first
// processes of a storm can queue at once instead of each taking the lock
// in turn. It reports false (and nothing is left behind) where the file
// system cannot (then the first combiner makes the queue under the lock).
func makeQueue(dbPath string, mode os.FileMode) bool {
	if fi, err := os.Lstat(dbPath); err != nil || !fi.Mode().IsRegular() {
		return false
	}
	boot, ok := bootID()
	if !ok {
		return false
	}
	fd, err := unix.Open(filepath.Dir(dbPath), unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, uint32(mode.Perm()))
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	if err := unix.Ftruncate(fd, gcqSize); err != nil {
		return false
	}
	h := make([]byte, 64)
	copy(h[hMagic:], gcqMagic)
	binary.LittleEndian.PutUint32(h[hVersion:], gcqVersion)
	binary.LittleEndian.PutUint32(h[hSlots:], gcqSlots)
	binary.LittleEndian.PutUint32(h[hSlotSize:], gcqSlotSize)
	copy(h[hBoot:], boot[:])
	randomID(h[hQueueID : hQueueID+16])
	if n, err := unix.Pwrite(fd, h, 0); err != nil || n != len(h) {
		return false
	}
	err = unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", fd), unix.AT_FDCWD, dbPath+suffixQueue, unix.AT_SYMLINK_FOLLOW)
	return err == nil || errors.Is(err, unix.EEXIST)
}

// randomID fills b (16 bytes) with a random identity: queue and request
// IDs must not repeat, not resist an adversary (who can write the queue
// file anyway).
func randomID(b []byte) {
	binary.LittleEndian.PutUint64(b[0:], mrand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], mrand.Uint64())
}

// checkQueueFile applies the lock files' rules to the queue file.
func checkQueueFile(path string, fi os.FileInfo, dbUID int) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: %s is not a regular file (%s)", ErrUnsafePath, path, fi.Mode().Type())
	}
	if n := fileLinks(fi); n != 1 {
		return fmt.Errorf("%w: %s has %d names (a hard link to another file?); remove it", ErrUnsafePath, path, n)
	}
	if uid, _, ok := fileOwner(fi); ok && uid != dbUID && uid != os.Geteuid() && uid != 0 {
		return fmt.Errorf("%w: %s belongs to uid %d, neither the store's owner (%d), you (%d) nor root", ErrUnsafePath, path, uid, dbUID, os.Geteuid())
	}
	return nil
}

func (q *gcQueue) headerValid(boot [16]byte) bool {
	m := q.mem
	return string(m[hMagic:hMagic+8]) == gcqMagic &&
		binary.LittleEndian.Uint32(m[hVersion:]) == gcqVersion &&
		binary.LittleEndian.Uint32(m[hSlots:]) == gcqSlots &&
		binary.LittleEndian.Uint32(m[hSlotSize:]) == gcqSlotSize &&
		bytes.Equal(m[hBoot:hBoot+16], boot[:]) &&
		!bytes.Equal(m[hQueueID:hQueueID+16], make([]byte, 16))
}

// reset makes every slot FREE and stamps this boot; a damaged header also
// gets a new queue ID. The store's exclusive lock is held, and slots of
// another boot have no live owner or combiner.
func (q *gcQueue) reset(boot [16]byte) {
	m := q.mem
	for i := range gcqSlots {
		atomic.StoreUint32(q.word(i, sState), gcFree)
	}
	keepID := string(m[hMagic:hMagic+8]) == gcqMagic && binary.LittleEndian.Uint32(m[hVersion:]) == gcqVersion &&
		!bytes.Equal(m[hQueueID:hQueueID+16], make([]byte, 16))
	if !keepID {
		randomID(m[hQueueID : hQueueID+16])
	}
	copy(m[hMagic:], gcqMagic)
	binary.LittleEndian.PutUint32(m[hVersion:], gcqVersion)
	binary.LittleEndian.PutUint32(m[hSlots:], gcqSlots)
	binary.LittleEndian.PutUint32(m[hSlotSize:], gcqSlotSize)
	copy(m[hBoot:], boot[:])
}

// safely runs fn, which touches the mapping; a fault (the file truncated
// under it) marks the queue broken and reports false.
func (q *gcQueue) safely(fn func()) (ok bool) {
	if q.broken.Load() {
		return false
	}
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if p := recover(); p != nil {
			q.broken.Store(true)
			ok = false
		}
	}()
	fn()
	return true
}

func (q *gcQueue) word(slot, off int) *uint32 {
	return (*uint32)(unsafe.Pointer(&q.mem[gcqHeader+slot*gcqSlotSize+off]))
}

func (q *gcQueue) seqWord() *uint32 { return (*uint32)(unsafe.Pointer(&q.mem[hSeq])) }

func (q *gcQueue) slotBytes(slot int) []byte {
	return q.mem[gcqHeader+slot*gcqSlotSize : gcqHeader+(slot+1)*gcqSlotSize]
}

// ofdLock takes the OFD byte-range lock that owns slot, without waiting.
// The kernel drops it when this queue's descriptor closes (its process
// died): a slot's owner is always alive or gone, never a reused pid.
func (q *gcQueue) ofdLock(slot int) bool {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: int64(slot), Len: 1}
	return unix.FcntlFlock(q.f.Fd(), unix.F_OFD_SETLK, &lk) == nil
}

// claim returns a slot for one operation of this process, owned by this
// queue, or false if none is free.
func (q *gcQueue) claim() (slot int, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.safely(func() {
		for i, busy := range q.owned {
			if busy {
				continue
			}
			switch st := atomic.LoadUint32(q.word(i, sState)); st {
			case gcFree, gcDone:
				atomic.StoreUint32(q.word(i, sState), gcFree)
				q.owned[i], slot, ok = true, i, true
				return
			}
		}
		if len(q.owned) >= maxOwnedSlots {
			return
		}
		start := mrand.IntN(gcqSlots)
		for k := range gcqSlots {
			i := (start + k) % gcqSlots
			if _, mine := q.owned[i]; mine || !q.ofdLock(i) {
				continue
			}
			// Ours now; what its last owner left: a finished slot is
			// reused; a submitted one (its owner died) is withdrawn,
			// unless a combiner takes it first; a taken one belongs to
			// a combiner: leave it.
			w := q.word(i, sState)
			st := atomic.LoadUint32(w)
			if st == gcSubmitted && atomic.CompareAndSwapUint32(w, gcSubmitted, gcFree) {
				st = gcFree
			}
			if st == gcFree || st == gcDone {
				atomic.StoreUint32(w, gcFree)
				q.owned[i], slot, ok = true, i, true
				return
			}
			q.owned[i] = false // owned, not usable yet; tried again later
		}
	})
	return slot, ok
}

// unclaim gives slot back to this queue's pool.
func (q *gcQueue) unclaim(slot int) {
	q.mu.Lock()
	q.owned[slot] = false
	q.mu.Unlock()
}

// publish puts the request in its slot and marks it SUBMITTED (payload
// first, then the state: a combiner that sees SUBMITTED sees the payload).
func (q *gcQueue) publish(slot int, req [16]byte, payload []byte) bool {
	return q.safely(func() {
		b := q.slotBytes(slot)
		copy(b[sReqID:], req[:])
		binary.LittleEndian.PutUint32(b[sLen:], uint32(len(payload)))
		copy(b[sData:], payload)
		atomic.StoreUint32(q.word(slot, sState), gcSubmitted)
	})
}

// state reads slot's state and whether it holds request req.
func (q *gcQueue) state(slot int, req [16]byte) (st uint32, mine bool) {
	q.safely(func() {
		st = atomic.LoadUint32(q.word(slot, sState))
		mine = bytes.Equal(q.slotBytes(slot)[sReqID:sReqID+16], req[:])
	})
	return st, mine
}

// result returns the result of request req if its slot is DONE, and frees
// the slot.
func (q *gcQueue) result(slot int, req [16]byte) (res *gcResult, done bool) {
	q.safely(func() {
		if atomic.LoadUint32(q.word(slot, sState)) != gcDone {
			return
		}
		b := q.slotBytes(slot)
		if !bytes.Equal(b[sReqID:sReqID+16], req[:]) {
			return
		}
		n := int(binary.LittleEndian.Uint32(b[sLen:]))
		var err error
		if n > gcPayloadMax {
			err = errBadPayload
		} else {
			res, err = decodeResult(bytes.Clone(b[sData : sData+n]))
		}
		if err != nil {
			res = &gcResult{err: err}
		}
		atomic.StoreUint32(q.word(slot, sState), gcFree)
		done = true
	})
	return res, done
}

// withdraw takes back a request nobody took: afterwards it is certain that
// it was never applied.
func (q *gcQueue) withdraw(slot int) (ok bool) {
	q.safely(func() { ok = atomic.CompareAndSwapUint32(q.word(slot, sState), gcSubmitted, gcFree) })
	return ok
}

// takenBy is the pid of the combiner that took slot.
func (q *gcQueue) takenBy(slot int) (pid int) {
	q.safely(func() { pid = int(atomic.LoadUint32(q.word(slot, sTakenBy))) })
	return pid
}

// gcTook is one slot a combiner took.
type gcTook struct {
	slot    int
	req     [16]byte
	payload []byte
	dead    bool // its owner died: apply it only if a dead combiner already did (its record)
}

// ownerAlive reports whether a live process owns slot (holds its OFD
// lock): this queue itself, or another descriptor.
func (q *gcQueue) ownerAlive(slot int) bool {
	q.mu.Lock()
	_, mine := q.owned[slot]
	q.mu.Unlock()
	if mine {
		return true
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: int64(slot), Len: 1}
	if err := unix.FcntlFlock(q.f.Fd(), unix.F_OFD_GETLK, &lk); err != nil {
		return true // cannot tell: assume alive, as before liveness checks
	}
	return lk.Type != unix.F_UNLCK
}

// takeAll takes every SUBMITTED slot, and every TAKEN one (its combiner
// died: whoever holds the lock is the only one that moves slots out of
// SUBMITTED or TAKEN, and a combiner publishes all it took before it
// releases the lock). The store's exclusive lock is held.
//
// A request whose submitter died before it was taken is dropped, never
// applied: a killed process's write then exists only if a combiner had
// taken it before the kill, not at some later time nobody waits for (a
// restarted process that found it missing and wrote again would see it
// doubled). A TAKEN one whose submitter died is returned marked dead: the
// caller applies it only if its record shows a dead combiner committed it.
func (q *gcQueue) takeAll(pid int) (taken []gcTook, ok bool) {
	ok = q.safely(func() {
		for i := range gcqSlots {
			w := q.word(i, sState)
			st := atomic.LoadUint32(w)
			if st != gcSubmitted && st != gcTaken {
				continue
			}
			alive := q.ownerAlive(i)
			if st == gcSubmitted {
				if !alive {
					atomic.CompareAndSwapUint32(w, gcSubmitted, gcFree)
					continue
				}
				if !atomic.CompareAndSwapUint32(w, gcSubmitted, gcTaken) {
					continue // withdrawn meanwhile
				}
			}
			atomic.StoreUint32(q.word(i, sTakenBy), uint32(pid))
			b := q.slotBytes(i)
			t := gcTook{slot: i, dead: !alive}
			copy(t.req[:], b[sReqID:sReqID+16])
			if n := int(binary.LittleEndian.Uint32(b[sLen:])); n <= gcPayloadMax {
				t.payload = bytes.Clone(b[sData : sData+n])
			}
			taken = append(taken, t)
		}
	})
	return taken, ok
}

// done publishes a taken slot's result and marks it DONE.
func (q *gcQueue) done(slot int, result []byte) {
	q.safely(func() {
		b := q.slotBytes(slot)
		binary.LittleEndian.PutUint32(b[sLen:], uint32(len(result)))
		copy(b[sData:], result)
		atomic.StoreUint32(q.word(slot, sState), gcDone)
	})
}

// free marks the caller's own slot FREE (the caller owns it and holds the
// store's lock, or has read its result).
func (q *gcQueue) free(slot int) {
	q.safely(func() { atomic.StoreUint32(q.word(slot, sState), gcFree) })
}

// wake tells every waiting submitter that results were published.
func (q *gcQueue) wake() {
	q.safely(func() {
		w := q.seqWord()
		atomic.AddUint32(w, 1)
		_, _, _ = unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w)), futexWake, uintptr(1<<31-1), 0, 0, 0)
	})
}

const (
	futexWait = 0 // shared (not FUTEX_PRIVATE_FLAG): the word is in a MAP_SHARED file
	futexWake = 1
)

// gcSafetyNet bounds a submitter's sleep between looks at its slot: a
// combiner killed after publishing and before its wake-up is noticed then.
const gcSafetyNet = 50 * time.Millisecond

// seq reads the futex word (false: the mapping failed). It is read before
// the slot is looked at: a wake-up that comes between the two makes the
// wait return at once.
func (q *gcQueue) seq() (v uint32, ok bool) {
	ok = q.safely(func() { v = atomic.LoadUint32(q.seqWord()) })
	return v, ok
}

// wait sleeps until the futex word moves from seq, the safety net passes
// or ctx ends.
func (q *gcQueue) wait(ctx context.Context, seq uint32) {
	wait := gcSafetyNet
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, max(time.Until(dl), 100*time.Microsecond))
	}
	ts := unix.NsecToTimespec(int64(wait))
	q.safely(func() {
		_, _, _ = unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(q.seqWord())), futexWait, uintptr(seq),
			uintptr(unsafe.Pointer(&ts)), 0, 0)
	})
}

// anyQueued reports whether any slot is SUBMITTED or TAKEN (a combiner has
// work).
func (q *gcQueue) anyQueued() (any bool) {
	q.safely(func() {
		for i := range gcqSlots {
			if st := atomic.LoadUint32(q.word(i, sState)); st == gcSubmitted || st == gcTaken {
				any = true
				return
			}
		}
	})
	return any
}

// ownPending reports whether a slot of this queue handle still holds a
// request nobody finished.
func (q *gcQueue) ownPending() (pending bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.safely(func() {
		for i := range q.owned {
			if st := atomic.LoadUint32(q.word(i, sState)); st == gcSubmitted || st == gcTaken {
				pending = true
				return
			}
		}
	})
	return pending
}

// sameFile reports whether the queue is still the file at its path.
func (q *gcQueue) current() bool { return sameFile(q.f, q.path) }

// close unmaps and closes the queue (dropping its slots' OFD locks).
func (q *gcQueue) close() {
	if q.mem != nil {
		_ = unix.Munmap(q.mem)
		q.mem = nil
	}
	if q.f != nil {
		_ = q.f.Close()
	}
}
