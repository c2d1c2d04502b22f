package etcdkv

// tx.go: one transaction — a snapshot at one revision, the write buffer
// merged over it (read-your-writes), and the commit as one fenced etcd Txn.
//
// May touch: the store's keys in etcd (reads at the snapshot's revision;
// the commit's one Txn).

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/psbase/psbase"
	"github.com/psbase/psbase/internal/kv"
)

// Tx is a transaction on an etcd store; it implements kv.Tx. A Tx is used
// by one goroutine at a time.
//
// Reads go to the cluster at the snapshot's revision (and are cached: a
// revision never changes). kv's Get and Cursor cannot return an error, so
// the first failed read (an endpoint lost, the revision compacted) is kept:
// the read returns nil, and Commit, Rollback of a read-only Tx and Err
// return it; a writable Tx that saw one writes nothing.
type Tx struct {
	b        *Backend
	ctx      context.Context
	rev      int64
	writable bool
	done     bool
	err      error // first read failure

	cache map[string]cached

	// The write buffer: entries sorted by key, and the prefixes whose
	// snapshot keys are hidden (cleared by DeleteBucket).
	buf     []entry
	cleared []string

	held   *held         // the lock, for a writable Tx (nil with the noLock knob)
	waited time.Duration // how long Begin waited for the lock
}

type cached struct {
	val []byte
	ok  bool
}

// entry is a buffered write: a value, or a deletion.
type entry struct {
	key string
	val []byte
	del bool
}

var _ kv.Tx = (*Tx)(nil)

// Revision is the etcd revision the transaction reads at.
func (t *Tx) Revision() int64 { return t.rev }

// LockWaited is how long Begin waited for the store's lock (0 for a
// read-only Tx).
func (t *Tx) LockWaited() time.Duration { return t.waited }

// Err returns the first read failure, or nil.
func (t *Tx) Err() error { return t.err }

// Writable reports whether the transaction may write.
func (t *Tx) Writable() bool { return t.writable }

func (t *Tx) fail(err error) {
	if t.err == nil && err != nil {
		// Classified as the backend's other failures are: no endpoint
		// answered, the credentials refused, or ErrUnavailable (the
		// snapshot's revision compacted, say).
		t.err = fmt.Errorf("etcd read at revision %d: %w", t.rev, t.b.unreachable("read", err))
	}
}

// find returns the buffer index of key and whether it is there.
func (t *Tx) find(key string) (int, bool) {
	return slices.BinarySearchFunc(t.buf, key, func(e entry, k string) int { return strings.Compare(e.key, k) })
}

func (t *Tx) isCleared(key string) bool {
	for _, p := range t.cleared {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// hidden reports whether the snapshot's value of key is not what the Tx
// sees (the buffer has the key, or a DeleteBucket cleared it).
func (t *Tx) hidden(key string) bool {
	if _, ok := t.find(key); ok {
		return true
	}
	return t.isCleared(key)
}

// snapGet reads key from the snapshot.
func (t *Tx) snapGet(key string) ([]byte, bool) {
	if c, ok := t.cache[key]; ok {
		return c.val, c.ok
	}
	if t.err != nil {
		return nil, false
	}
	resp, err := t.b.cli.Get(t.ctx, key, clientv3.WithRev(t.rev))
	if err != nil {
		t.fail(err)
		return nil, false
	}
	c := cached{}
	if len(resp.Kvs) == 1 {
		c = cached{val: resp.Kvs[0].Value, ok: true}
		if c.val == nil {
			c.val = []byte{}
		}
	}
	t.cache[key] = c
	return c.val, c.ok
}

// get returns what the Tx sees at key.
func (t *Tx) get(key string) ([]byte, bool) {
	if i, ok := t.find(key); ok {
		e := t.buf[i]
		return e.val, !e.del
	}
	if t.isCleared(key) {
		return nil, false
	}
	return t.snapGet(key)
}

func (t *Tx) set(key string, val []byte, del bool) {
	i, ok := t.find(key)
	e := entry{key: key, val: val, del: del}
	if ok {
		t.buf[i] = e
		return
	}
	t.buf = slices.Insert(t.buf, i, e)
}

func (t *Tx) writeCheck() error {
	switch {
	case t.done:
		return psbase.ErrTxDone
	case !t.writable:
		return fmt.Errorf("%w: write in a read-only etcd transaction", psbase.ErrReadOnly)
	}
	return nil
}

// Bucket returns the top-level bucket called name, or nil.
func (t *Tx) Bucket(name []byte) kv.Bucket { return t.bucket(nil, name) }

func (t *Tx) bucket(parent [][]byte, name []byte) kv.Bucket {
	path := append(slices.Clone(parent), slices.Clone(name))
	if _, ok := t.get(t.b.l.marker(path)); !ok {
		return nil
	}
	return &bucket{t: t, path: path}
}

// CreateBucket creates a top-level bucket; it is an error if it exists.
func (t *Tx) CreateBucket(name []byte) (kv.Bucket, error) { return t.createBucket(nil, name) }

func (t *Tx) createBucket(parent [][]byte, name []byte) (kv.Bucket, error) {
	if err := t.writeCheck(); err != nil {
		return nil, err
	}
	if len(name) == 0 {
		return nil, errors.New("etcdkv: bucket name required")
	}
	path := append(slices.Clone(parent), slices.Clone(name))
	m := t.b.l.marker(path)
	if _, ok := t.get(m); ok {
		return nil, fmt.Errorf("etcdkv: bucket %q already exists", name)
	}
	t.set(m, []byte{}, false)
	return &bucket{t: t, path: path}, nil
}

// DeleteBucket removes a top-level bucket and everything in it.
func (t *Tx) DeleteBucket(name []byte) error { return t.deleteBucket(nil, name) }

func (t *Tx) deleteBucket(parent [][]byte, name []byte) error {
	if err := t.writeCheck(); err != nil {
		return err
	}
	path := append(slices.Clone(parent), slices.Clone(name))
	if _, ok := t.get(t.b.l.marker(path)); !ok {
		return fmt.Errorf("etcdkv: bucket %q not found", name)
	}
	for _, p := range t.b.l.subtree(path) {
		t.buf = slices.DeleteFunc(t.buf, func(e entry) bool { return strings.HasPrefix(e.key, p) })
		if !t.isCleared(p) {
			t.cleared = append(t.cleared, p)
		}
	}
	return nil
}

// Rollback discards the transaction's changes and ends it. For a read-only
// Tx it returns the first read failure, if any.
func (t *Tx) Rollback() error {
	if t.done {
		return psbase.ErrTxDone
	}
	t.done = true
	t.buf, t.cleared, t.cache = nil, nil, nil
	if t.held != nil {
		t.b.release(t.held)
		t.held = nil
	}
	if !t.writable {
		return t.err
	}
	return nil
}

// Commit sends the buffered writes as one etcd Txn, fenced on the lock
// key's create revision, and ends the transaction. A transaction above the
// limits (Config.MaxTxnOps, MaxRequestBytes) returns a *TxTooLargeError and
// sends nothing; a refused fence returns a *LockLostError and wrote
// nothing; an error in flight (an endpoint lost, the context's end) wraps
// psbase.ErrUnknownOutcome: the Txn may or may not have been applied.
func (t *Tx) Commit() error {
	if t.done {
		return psbase.ErrTxDone
	}
	if !t.writable {
		return t.Rollback()
	}
	defer t.Rollback()
	if t.err != nil {
		return t.err
	}
	ops := t.ops()
	if len(ops) == 0 {
		return nil
	}
	_, err := t.fencedCommit(ops, "")
	return err
}

// fencedCommit commits ops as one etcd Txn fenced on this holder's lock key
// (the compare on its create revision: a holder whose lease expired can
// never commit after another took the lock), within the store's limits;
// part names what is committed in errors ("" for a whole transaction).
func (t *Tx) fencedCommit(ops []wop, part string) (*clientv3.TxnResponse, error) {
	var cmps []clientv3.Cmp
	if t.held != nil && !t.b.cfg.weak.noFence {
		cmps = append(cmps, t.held.m.IsOwner())
	}
	if !t.b.cfg.weak.noLimits {
		if err := t.b.checkLimits(ops, t.held); err != nil {
			return nil, err
		}
	}
	resp, err := t.b.cli.Txn(t.ctx).If(cmps...).Then(toClientOps(ops)...).Commit()
	if err != nil {
		if status.Code(err) == codes.InvalidArgument {
			return nil, fmt.Errorf("etcd refused the commit of %sstore %q (nothing was written): %w", part, t.b.cfg.Name, err)
		}
		return nil, fmt.Errorf("%w: etcd commit of %sstore %q: %w", psbase.ErrUnknownOutcome, part, t.b.cfg.Name, err)
	}
	if !resp.Succeeded {
		t.b.sessionLost(t.held)
		return nil, &LockLostError{Store: t.b.cfg.Name, LockKey: t.held.m.Key(), Lease: int64(t.held.sess.Lease())}
	}
	return resp, nil
}

// wop is one write of the commit: a put, a delete of one key, or of the
// range [key, end).
type wop struct {
	key, end string
	val      []byte
	del      bool
}

// ops turns the buffer into the commit's writes. A cleared prefix becomes
// range deletes of the gaps between the keys put under it again (etcd
// refuses a Txn whose put lies in one of its delete ranges).
func (t *Tx) ops() []wop {
	cl := slices.Clone(t.cleared)
	slices.Sort(cl)
	var roots []string
	for _, p := range cl {
		if len(roots) > 0 && strings.HasPrefix(p, roots[len(roots)-1]) {
			continue
		}
		roots = append(roots, p)
	}
	var ops []wop
	for _, p := range roots {
		start, end := p, rangeEnd(p)
		for _, e := range t.buf {
			if e.del || e.key < start || e.key >= end {
				continue
			}
			if start < e.key {
				ops = append(ops, wop{key: start, end: e.key, del: true})
			}
			start = e.key + "\x00"
		}
		ops = append(ops, wop{key: start, end: end, del: true})
	}
	for _, e := range t.buf {
		switch {
		case !e.del:
			ops = append(ops, wop{key: e.key, val: e.val})
		case !t.isCleared(e.key):
			ops = append(ops, wop{key: e.key, del: true})
		}
	}
	return ops
}

func toClientOps(ops []wop) []clientv3.Op {
	out := make([]clientv3.Op, len(ops))
	for i, o := range ops {
		switch {
		case !o.del:
			out[i] = clientv3.OpPut(o.key, string(o.val))
		case o.end != "":
			out[i] = clientv3.OpDelete(o.key, clientv3.WithRange(o.end))
		default:
			out[i] = clientv3.OpDelete(o.key)
		}
	}
	return out
}

// bucket is a bucket of a Tx; it implements kv.Bucket.
type bucket struct {
	t    *Tx
	path [][]byte
}

func (b *bucket) Get(key []byte) []byte {
	if b.t.done || len(key) == 0 {
		return nil
	}
	v, ok := b.t.get(b.t.b.l.data(b.path) + string(key))
	if !ok {
		return nil
	}
	return v
}

func (b *bucket) Put(key, value []byte) error {
	if err := b.t.writeCheck(); err != nil {
		return err
	}
	if len(key) == 0 {
		return errors.New("etcdkv: key required")
	}
	if value == nil {
		value = []byte{}
	}
	b.t.set(b.t.b.l.data(b.path)+string(key), slices.Clone(value), false)
	return nil
}

func (b *bucket) Delete(key []byte) error {
	if err := b.t.writeCheck(); err != nil {
		return err
	}
	b.t.set(b.t.b.l.data(b.path)+string(key), nil, true)
	return nil
}

func (b *bucket) Cursor() kv.Cursor {
	lo := b.t.b.l.data(b.path)
	return &cursor{t: b.t, lo: lo, hi: rangeEnd(lo)}
}

func (b *bucket) Sequence() uint64 {
	v, ok := b.t.get(b.t.b.l.seq(b.path))
	if !ok {
		return 0
	}
	n, err := strconv.ParseUint(string(v), 10, 64)
	if err != nil {
		b.t.fail(fmt.Errorf("%w: sequence %q of bucket %q", psbase.ErrCorrupt, v, b.path[len(b.path)-1]))
		return 0
	}
	return n
}

func (b *bucket) SetSequence(v uint64) error {
	if err := b.t.writeCheck(); err != nil {
		return err
	}
	b.t.set(b.t.b.l.seq(b.path), []byte(strconv.FormatUint(v, 10)), false)
	return nil
}

func (b *bucket) NextSequence() (uint64, error) {
	if err := b.t.writeCheck(); err != nil {
		return 0, err
	}
	n := b.Sequence() + 1
	if b.t.err != nil {
		return 0, b.t.err
	}
	return n, b.SetSequence(n)
}

func (b *bucket) Bucket(name []byte) kv.Bucket { return b.t.bucket(b.path, name) }

func (b *bucket) CreateBucket(name []byte) (kv.Bucket, error) {
	return b.t.createBucket(b.path, name)
}

func (b *bucket) DeleteBucket(name []byte) error { return b.t.deleteBucket(b.path, name) }

// ForEachBucket calls fn with the name of every nested bucket, in order.
func (b *bucket) ForEachBucket(fn func(name []byte) error) error {
	lo := b.t.b.l.marker(b.path)
	c := &cursor{t: b.t, lo: lo, hi: rangeEnd(lo)}
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		s := string(k)
		// Direct children only: "<hex>/" and nothing after it.
		if s == "" || strings.IndexByte(s, '/') != len(s)-1 {
			continue
		}
		name, err := decName(s[:len(s)-1])
		if err != nil {
			return fmt.Errorf("%w: bucket marker %q", psbase.ErrCorrupt, lo+s)
		}
		if err := fn(name); err != nil {
			return err
		}
	}
	return b.t.err
}
