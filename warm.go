package psbase

// warm.go: warm reads — one read-only bbolt handle kept open across the
// read transactions of a Store, instead of an open and close per operation.
// Measured (BenchmarkFloorGet): a Get by random ID on 10 000 records costs
// about half as much with the kept handle, under the same lock.
//
// When it is correct (read from bbolt v1.5's db.go and tx.go, then stormed:
// TestStormWarmReads, TestWarmReadsFollowTheFile):
//
//  1. Every read transaction on the kept handle begins and ends while this
//     process holds the store's shared lock. Writers hold the exclusive lock
//     for the whole of their open..close, so no page changes during a read,
//     and no read outlives its lock (after the release a writer may reuse
//     the pages the snapshot used).
//  2. A read-only bbolt handle re-reads the meta pages from its mapping at
//     every Begin and never loads the freelist (Tx.Check would: Check never
//     uses the kept handle). The page cache is unified with the mapping
//     (bbolt itself relies on this: it writes pages with pwrite and reads
//     them through the mapping), so another process's committed pages are
//     what this process's mapping shows.
//  3. Under the lock, before each Begin, the path must still name the mapped
//     file (same device and inode: Cleanup renames a new file in, Destroy
//     removes it) and the file must have the size it had when mapped (a
//     grown file holds pages beyond the mapping). Otherwise the handle is
//     retired and a new one opened. Without the size check reads fault or
//     see torn pages; without the identity check they are stale: the
//     negative controls weak.noWarmSize and weak.noWarmIdentity show both.
//  4. bbolt's own shared flock on the data file is dropped right after the
//     open: kept, it would make every writer's bolt.Open wait for it (and
//     fail with its timeout). psbase's lock file is what excludes writers.
//
// Writes are never warm: a write handle's in-memory freelist goes stale as
// soon as another process commits.
//
// May touch: the database file, read-only, through openBolt.

import (
	"os"
	"sync"
)

// warmReader is a Store's kept read handle. Its handle is shared by the
// Store's concurrent readers (bbolt allows many read transactions on one
// handle); a retired handle is closed when its last reader ends.
type warmReader struct {
	mu   sync.Mutex
	h    *boltFile   // the current handle, nil if none
	fi   os.FileInfo // the file when h was opened
	refs map[*boltFile]int

	opens, hits uint64 // for Stats
}

// get returns a handle for one read transaction, opening one if the kept
// handle is missing or stale. The store's shared lock is held.
func (w *warmReader) get(s *Store) (*boltFile, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if h := w.h; h != nil {
		if !h.abandoned() && w.fresh(s) {
			w.refs[h]++
			w.hits++
			return h, nil
		}
		w.retireLocked()
	}
	h, err := s.openBolt(false)
	if err != nil {
		return nil, err
	}
	fi, err := h.file.Stat()
	if err == nil {
		err = dropFlock(h.file)
	}
	if err != nil {
		_ = h.close()
		return nil, classifyIOError(err)
	}
	if w.refs == nil {
		w.refs = map[*boltFile]int{}
	}
	w.h, w.fi = h, fi
	w.refs[h] = 2 // the slot's and the caller's
	w.opens++
	return h, nil
}

// fresh reports whether the kept handle still maps the store's file, whole.
func (w *warmReader) fresh(s *Store) bool {
	fi, err := w.h.file.Stat()
	if err != nil {
		return false
	}
	if !s.cfg.weak.noWarmSize && fi.Size() != w.fi.Size() {
		return false
	}
	if s.cfg.weak.noWarmIdentity {
		return true
	}
	if fileLinks(fi) == 0 {
		return false
	}
	pi, err := os.Lstat(s.path)
	return err == nil && os.SameFile(fi, pi)
}

// put ends one read transaction's use of h.
func (w *warmReader) put(h *boltFile) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.unrefLocked(h)
}

// retire drops the kept handle (Close, Destroy); readers still using it
// finish first.
func (w *warmReader) retire() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.retireLocked()
}

func (w *warmReader) retireLocked() {
	if h := w.h; h != nil {
		w.h, w.fi = nil, nil
		w.unrefLocked(h)
	}
}

func (w *warmReader) unrefLocked(h *boltFile) {
	w.refs[h]--
	if w.refs[h] > 0 {
		return
	}
	delete(w.refs, h)
	if !h.abandoned() {
		_ = h.close()
	}
}

// stats returns how many handles were opened and how many reads reused one.
func (w *warmReader) stats() (opens, hits uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.opens, w.hits
}
