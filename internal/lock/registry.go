package lock

// May touch: nothing (in-process state).

// registry.go: the in-process registry: one context-aware FIFO RW lock per
// lock file, shared by every File of the process (T4, T10).

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

// fileKey identifies a lock file for the in-process registry: device and
// inode on Unix (a path can change its file, T2), the cleaned absolute path
// where there are no inode numbers.
type fileKey struct {
	dev, ino uint64
	path     string
}

// procLocks, the registry, is the one piece of process-global state in psbase, and it must be
// global: flock excludes open file descriptions, not goroutines, and two
// Stores (or Files) on one path in one process must exclude each other as
// if they were two processes. It maps each lock file to its in-process RW lock.
// It also gives the race detector the happens-before edge between holders,
// which it cannot see through a file lock ("a redundant mutex", lockedfile).
// Entries are reference counted and dropped when unused.
var procLocks = &registry{m: make(map[fileKey]*procLock)}

type registry struct {
	mu sync.Mutex
	m  map[fileKey]*procLock
}

func (r *registry) get(k fileKey) *procLock {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.m[k]
	if p == nil {
		p = &procLock{key: k, token: make(chan struct{}, 1)}
		r.m[k] = p
	}
	p.refs++
	return p
}

func (r *registry) ref(p *procLock) {
	r.mu.Lock()
	p.refs++
	r.mu.Unlock()
}

func (r *registry) put(p *procLock) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p.refs--
	if p.refs == 0 && r.m[p.key] == p {
		delete(r.m, p.key)
	}
}

// procLock is the in-process RW lock of one lock file: context-aware (a
// sync.RWMutex wait cannot be cancelled) and FIFO, so that a writer is not
// starved by a stream of readers inside one process either: once a writer
// queues, later readers queue behind it.
type procLock struct {
	key  fileKey
	refs int // guarded by procLocks.mu

	mu      sync.Mutex
	readers int
	writer  bool
	queue   []*procWaiter

	// token is held by the one goroutine of this process that waits in the
	// kernel for this lock file (T10).
	token chan struct{}
}

type procWaiter struct {
	excl    bool
	granted bool
	ready   chan struct{}
}

func (p *procLock) lock(ctx context.Context, excl bool) error {
	p.mu.Lock()
	if len(p.queue) == 0 && p.canGrant(excl) {
		p.grant(excl)
		p.mu.Unlock()
		return nil
	}
	w := &procWaiter{excl: excl, ready: make(chan struct{})}
	p.queue = append(p.queue, w)
	p.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
	}
	p.mu.Lock()
	if w.granted {
		p.mu.Unlock()
		p.unlock(excl)
		return ctx.Err()
	}
	for i, q := range p.queue {
		if q == w {
			p.queue = append(p.queue[:i], p.queue[i+1:]...)
			break
		}
	}
	p.grantWaiters() // a cancelled writer may have been blocking readers
	p.mu.Unlock()
	return ctx.Err()
}

// tryLock is lock without waiting.
func (p *procLock) tryLock(excl bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) == 0 && p.canGrant(excl) {
		p.grant(excl)
		return true
	}
	return false
}

func (p *procLock) unlock(excl bool) {
	p.mu.Lock()
	if excl {
		p.writer = false
	} else {
		p.readers--
	}
	p.grantWaiters()
	p.mu.Unlock()
}

func (p *procLock) canGrant(excl bool) bool {
	if excl {
		return !p.writer && p.readers == 0
	}
	return !p.writer
}

func (p *procLock) grant(excl bool) {
	if excl {
		p.writer = true
	} else {
		p.readers++
	}
}

// grantWaiters wakes waiters from the front of the queue in order.
func (p *procLock) grantWaiters() {
	for len(p.queue) > 0 && p.canGrant(p.queue[0].excl) {
		w := p.queue[0]
		p.queue[0] = nil
		p.queue = p.queue[1:]
		p.grant(w.excl)
		w.granted = true
		close(w.ready)
	}
}

func (p *procLock) waitToken(ctx context.Context) error {
	select {
	case p.token <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *procLock) releaseToken() { <-p.token }

// keyOf returns the registry key of the lock file at path.
func keyOf(path string, fi os.FileInfo) fileKey {
	if dev, ino, ok := fileID(fi); ok {
		return fileKey{dev: dev, ino: ino}
	}
	p := filepath.Clean(path)
	if runtime.GOOS == "windows" {
		p = strings.ToLower(p)
	}
	return fileKey{path: p}
}
