package psbase

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/psbase/psbase/internal/backend"
	"github.com/psbase/psbase/internal/kv"
)

// memRuns numbers the runs, so that -count=N gets fresh stores.
var memRuns atomic.Int64

// memBackends are the in-memory stores of the "memtest" backend, by name.
var memBackends sync.Map // string → *memStore

func init() {
	backend.Register("memtest", func(ctx context.Context, cfg backend.Config) (backend.Backend, string, error) {
		rest := strings.TrimPrefix(cfg.URL, "memtest://")
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			rest = rest[at+1:]
		}
		if rest == "down" {
			return nil, "", fmt.Errorf("memtest: no server answers")
		}
		st, _ := memBackends.LoadOrStore(rest, newMemStore())
		return &memBackend{st: st.(*memStore), timeout: cfg.LockTimeout}, "memtest://" + rest, nil
	})
}

// memStore is one in-memory store: its committed root, and a gate that
// admits one writer at a time.
type memStore struct {
	gate chan struct{}
	root atomic.Pointer[memBucket]
}

func newMemStore() *memStore {
	st := &memStore{gate: make(chan struct{}, 1)}
	st.root.Store(newMemBucket())
	return st
}

// memBackend is one opened handle on a memStore.
type memBackend struct {
	st      *memStore
	timeout time.Duration
	closed  atomic.Bool
}

func (b *memBackend) Begin(ctx context.Context, writable bool, op string) (kv.Tx, error) {
	if b.closed.Load() {
		return nil, ErrClosed
	}
	if writable {
		wctx := ctx
		if b.timeout > 0 {
			var cancel context.CancelFunc
			wctx, cancel = context.WithTimeout(ctx, b.timeout)
			defer cancel()
		}
		select {
		case b.st.gate <- struct{}{}:
		case <-wctx.Done():
			return nil, &LockTimeoutError{Path: "memtest", Op: op, Exclusive: true, Err: wctx.Err()}
		}
	}
	return &memTx{st: b.st, root: b.st.root.Load().clone(), write: writable}, nil
}

func (b *memBackend) Close() error { b.closed.Store(true); return nil }

func (b *memBackend) Destroy(ctx context.Context) error {
	select {
	case b.st.gate <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	b.st.root.Store(newMemBucket())
	<-b.st.gate
	return nil
}

// memBucket is an ordered map of keys to values and nested buckets.
type memBucket struct {
	keys []string // sorted
	vals map[string][]byte
	subs map[string]*memBucket
	seq  uint64
}

func newMemBucket() *memBucket {
	return &memBucket{vals: map[string][]byte{}, subs: map[string]*memBucket{}}
}

func (b *memBucket) clone() *memBucket {
	c := &memBucket{keys: slices.Clone(b.keys), vals: make(map[string][]byte, len(b.vals)), subs: make(map[string]*memBucket, len(b.subs)), seq: b.seq}
	for k, v := range b.vals {
		c.vals[k] = v
	}
	for k, s := range b.subs {
		c.subs[k] = s.clone()
	}
	return c
}

func (b *memBucket) insertKey(k string) {
	i, found := slices.BinarySearch(b.keys, k)
	if !found {
		b.keys = slices.Insert(b.keys, i, k)
	}
}

func (b *memBucket) removeKey(k string) {
	if i, found := slices.BinarySearch(b.keys, k); found {
		b.keys = slices.Delete(b.keys, i, i+1)
	}
}

// memTx is a transaction on a private copy of the root.
type memTx struct {
	st    *memStore
	root  *memBucket
	write bool
	done  bool
}

func (t *memTx) Writable() bool { return t.write }

func (t *memTx) Bucket(name []byte) kv.Bucket { return t.handle(t.root).Bucket(name) }

func (t *memTx) CreateBucket(name []byte) (kv.Bucket, error) {
	return t.handle(t.root).CreateBucket(name)
}

func (t *memTx) DeleteBucket(name []byte) error { return t.handle(t.root).DeleteBucket(name) }

func (t *memTx) Commit() error {
	if t.done {
		return ErrTxDone
	}
	t.done = true
	if t.write {
		t.st.root.Store(t.root)
		<-t.st.gate
	}
	return nil
}

func (t *memTx) Rollback() error {
	if t.done {
		return ErrTxDone
	}
	t.done = true
	if t.write {
		<-t.st.gate
	}
	return nil
}

func (t *memTx) handle(b *memBucket) *memHandle { return &memHandle{t: t, b: b} }

// memHandle is a bucket seen from a transaction.
type memHandle struct {
	t *memTx
	b *memBucket
}

var errMemReadOnly = fmt.Errorf("%w: memtest: read-only transaction", ErrReadOnly)

func (h *memHandle) Get(key []byte) []byte { return h.b.vals[string(key)] }

func (h *memHandle) Put(key, value []byte) error {
	if !h.t.write {
		return errMemReadOnly
	}
	k := string(key)
	if _, ok := h.b.subs[k]; ok {
		return fmt.Errorf("memtest: %q is a bucket", k)
	}
	h.b.vals[k] = value
	h.b.insertKey(k)
	return nil
}

func (h *memHandle) Delete(key []byte) error {
	if !h.t.write {
		return errMemReadOnly
	}
	k := string(key)
	if _, ok := h.b.subs[k]; ok {
		return fmt.Errorf("memtest: %q is a bucket", k)
	}
	delete(h.b.vals, k)
	h.b.removeKey(k)
	return nil
}

func (h *memHandle) Cursor() kv.Cursor { return &memCursor{b: h.b} }

func (h *memHandle) Sequence() uint64 { return h.b.seq }

func (h *memHandle) SetSequence(v uint64) error {
	if !h.t.write {
		return errMemReadOnly
	}
	h.b.seq = v
	return nil
}

func (h *memHandle) NextSequence() (uint64, error) {
	if !h.t.write {
		return 0, errMemReadOnly
	}
	h.b.seq++
	return h.b.seq, nil
}

func (h *memHandle) Bucket(name []byte) kv.Bucket {
	if s, ok := h.b.subs[string(name)]; ok {
		return h.t.handle(s)
	}
	return nil
}

func (h *memHandle) CreateBucket(name []byte) (kv.Bucket, error) {
	if !h.t.write {
		return nil, errMemReadOnly
	}
	k := string(name)
	if _, ok := h.b.subs[k]; ok {
		return nil, fmt.Errorf("memtest: bucket %q exists", k)
	}
	if _, ok := h.b.vals[k]; ok {
		return nil, fmt.Errorf("memtest: %q is a key", k)
	}
	s := newMemBucket()
	h.b.subs[k] = s
	h.b.insertKey(k)
	return h.t.handle(s), nil
}

func (h *memHandle) DeleteBucket(name []byte) error {
	if !h.t.write {
		return errMemReadOnly
	}
	k := string(name)
	if _, ok := h.b.subs[k]; !ok {
		return fmt.Errorf("memtest: no bucket %q", k)
	}
	delete(h.b.subs, k)
	h.b.removeKey(k)
	return nil
}

func (h *memHandle) ForEachBucket(fn func(name []byte) error) error {
	for _, k := range slices.Clone(h.b.keys) {
		if _, ok := h.b.subs[k]; ok {
			if err := fn([]byte(k)); err != nil {
				return err
			}
		}
	}
	return nil
}

// memCursor remembers the key it is on, so that writes between its moves
// do not shift it.
type memCursor struct {
	b   *memBucket
	cur string
	on  bool
}

func (c *memCursor) at(i int) ([]byte, []byte) {
	if i < 0 || i >= len(c.b.keys) {
		c.on = false
		return nil, nil
	}
	k := c.b.keys[i]
	c.cur, c.on = k, true
	return []byte(k), c.b.vals[k] // nil for a nested bucket
}

func (c *memCursor) First() ([]byte, []byte) { return c.at(0) }
func (c *memCursor) Last() ([]byte, []byte)  { return c.at(len(c.b.keys) - 1) }

func (c *memCursor) Seek(seek []byte) ([]byte, []byte) {
	i, _ := slices.BinarySearch(c.b.keys, string(seek))
	return c.at(i)
}

func (c *memCursor) Next() ([]byte, []byte) {
	if !c.on {
		return nil, nil
	}
	i, found := slices.BinarySearch(c.b.keys, c.cur)
	if found {
		i++
	}
	return c.at(i)
}

func (c *memCursor) Prev() ([]byte, []byte) {
	if !c.on {
		return nil, nil
	}
	i, _ := slices.BinarySearch(c.b.keys, c.cur)
	return c.at(i - 1)
}

// The record layer runs unchanged on a remote backend found by its URL
// scheme; what needs the local file says ErrUnsupported.
func TestRemoteBackend(t *testing.T) {
	ctx := context.Background()
	url := fmt.Sprintf("memtest://user:secret@%s-%d/jobs", t.Name(), memRuns.Add(1))
	fields := []Field{{Name: "name", Type: String, Unique: true}, {Name: "n", Type: Int}}
	if _, err := Open(ctx, url); !errors.Is(err, ErrNotExist) {
		t.Fatalf("open of a missing remote store: %v", err)
	}
	// Opened lazily, the missing store is found missing by its first
	// operation, read or write: ErrNotExist, not ErrCorrupt.
	if ls, err := Open(ctx, url, WithLazyOpen()); err != nil {
		t.Fatalf("lazy open: %v", err)
	} else {
		if _, err := ls.Get(ctx, 1); !errors.Is(err, ErrNotExist) || errors.Is(err, ErrCorrupt) {
			t.Errorf("Get on a missing remote store opened lazily: %v, want ErrNotExist", err)
		}
		if _, err := ls.Insert(ctx, Values{"n": 1}); !errors.Is(err, ErrNotExist) || errors.Is(err, ErrCorrupt) {
			t.Errorf("Insert on a missing remote store opened lazily: %v, want ErrNotExist", err)
		}
		_ = ls.Close()
	}
	s, err := Create(ctx, url, fields)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if strings.Contains(s.Path(), "secret") {
		t.Errorf("Path shows credentials: %s", s.Path())
	}
	if _, err := Create(ctx, url, fields); !errors.Is(err, ErrExists) || strings.Contains(err.Error(), "secret") {
		t.Fatalf("second create: %v", err)
	}
	id, err := s.Insert(ctx, Values{"name": "a", "n": 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Insert(ctx, Values{"name": "a"}); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("unique index: %v", err)
	}
	rec, err := s.Get(ctx, id)
	if err != nil || rec.Values["n"] != int64(1) {
		t.Fatalf("get: %+v %v", rec, err)
	}
	if _, err := s.Update(ctx, rec, Values{"n": 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, rec, Values{"n": 3}); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale update: %v", err)
	}
	if v, err := s.Add(ctx, id, "n", 10); err != nil || v != 12 {
		t.Fatalf("add: %d %v", v, err)
	}
	if _, ins, err := s.Upsert(ctx, "name", Values{"name": "b", "n": 5}); err != nil || !ins {
		t.Fatalf("upsert: %v %v", ins, err)
	}
	if err := s.AddField(ctx, Field{Name: "tag", Type: String, Default: "x"}, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateIndex(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	recs, err := s.Select(ctx, Query{Where: []Filter{Ge("n", 5)}, OrderBy: []Order{Desc("n")}})
	if err != nil || len(recs) != 2 || recs[0].Values["n"] != int64(12) || recs[1].Values["tag"] != "x" {
		t.Fatalf("select: %+v %v", recs, err)
	}
	if p, _ := s.Explain(ctx, Query{Where: []Filter{Eq("n", 5)}}); p.Index != "n" {
		t.Errorf("plan on the remote store: %+v", p)
	}
	n := 0
	for _, err := range s.Scan(ctx, Query{}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 2 {
		t.Errorf("scan: %d", n)
	}
	if rep, err := s.Check(ctx); err != nil || !rep.OK() {
		t.Fatalf("check: %+v %v", rep, err)
	}
	if st, err := s.Stats(ctx); err != nil || st.Records != 2 || st.FileSize != 0 {
		t.Fatalf("stats: %+v %v", st, err)
	}
	// Transactions: a rollback leaves nothing, a commit everything.
	err = s.Txn(ctx, func(tx *Tx) error {
		if _, err := tx.Insert(Values{"name": "c"}); err != nil {
			return err
		}
		return errors.New("no")
	})
	if err == nil {
		t.Fatal("txn error lost")
	}
	if c, _ := s.Count(ctx); c != 2 {
		t.Fatalf("rolled-back insert is there: %d records", c)
	}

	// What needs the file, or a backend's Cleaner (memtest has none).
	if _, err := s.Cleanup(ctx); !errors.Is(err, ErrUnsupported) {
		t.Errorf("cleanup: %v", err)
	}
	// Backup works on any backend (backup_remote.go): a local store file.
	if n, err := s.Backup(ctx, &strings.Builder{}); err != nil || n == 0 {
		t.Errorf("backup of a remote store: %d, %v", n, err)
	}
	if err := s.Restore(ctx, "x.db"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("restore: %v", err)
	}

	// Two handles exclude each other through the backend's lock.
	other, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	hold, err := other.Begin(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	_, err = s.Insert(short, Values{"name": "d"})
	cancel()
	if !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("insert while another handle holds the lock: %v", err)
	}
	_ = hold.Rollback()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := s
			if g%2 == 1 {
				h = other
			}
			for range 25 {
				if err := incrementInTxn(ctx, h, id); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if r, _ := s.Get(ctx, id); r.Values["n"] != int64(12+200) {
		t.Fatalf("counter after 200 increments from two handles: %v", r.Values["n"])
	}

	// Typed tables work there too.
	type job struct {
		ID   uint64
		Name string
		N    int
	}
	jobs, err := TableOf[job](ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if all, err := jobs.Select(ctx, Query{OrderBy: []Order{Asc("name")}}); err != nil || len(all) != 2 || all[0].N != 212 {
		t.Fatalf("typed select: %+v %v", all, err)
	}

	if err := s.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, url); !errors.Is(err, ErrNotExist) {
		t.Fatalf("open after destroy: %v", err)
	}
	if s2, err := Open(ctx, url, WithCreate(fields)); err != nil {
		t.Fatalf("open-or-create: %v", err)
	} else {
		s2.Close()
	}
}

// A URL is told apart from a path; an unknown scheme or an unreachable
// backend is a clear error that shows no credentials.
func TestRemoteURLs(t *testing.T) {
	for path, want := range map[string]string{
		"etcd://h:2379/jobs": "etcd", "ETCD+tls://h/x": "etcd+tls", "memtest://a/b": "memtest",
		"jobs.db": "", "/var/lib/x.db": "", "C://x.db": "", "://x": "", "1x://y": "", "a b://c": "",
	} {
		if got := remoteScheme(path); got != want {
			t.Errorf("remoteScheme(%q) = %q, want %q", path, got, want)
		}
	}
	for url, want := range map[string]string{
		"etcd://u:pw@h1:2379,h2:2379/jobs?tls=1": "etcd://…@h1:2379,h2:2379/jobs",
		"etcd://h1/jobs":                         "etcd://h1/jobs",
		"etcd://h1/a@b":                          "etcd://h1/a@b",
	} {
		if got := remoteName(remoteScheme(url), url); got != want {
			t.Errorf("remoteName(%q) = %q, want %q", url, got, want)
		}
	}
	ctx := context.Background()
	_, err := Open(ctx, "nosuch://user:hunter2@host/jobs")
	if !errors.Is(err, ErrUnsupported) || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("unknown scheme: %v", err)
	}
	_, err = Create(ctx, "memtest://user:hunter2@down", []Field{{Name: "a", Type: Int}})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("unreachable backend: %v", err)
	}
	if _, err := Open(ctx, "memtest://x/y", WithOverwrite()); !errors.Is(err, ErrOption) {
		t.Errorf("Open with WithOverwrite: %v", err)
	}
}
