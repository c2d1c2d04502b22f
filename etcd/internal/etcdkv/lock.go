package etcdkv

// lock.go: the store lock across hosts — an etcd concurrency.Mutex on this
// Backend's session lease, the holder record beside it under the same
// lease, and bounded clean-ups.
//
// May touch: the keys "<name>/lock/<lease>" and "<name>/holder/<lease>",
// the backend's session lease.

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/psbase/psbase"
)

// held is a lock this Backend holds for one writable Tx.
type held struct {
	sess *concurrency.Session
	m    *concurrency.Mutex
	rev  int64 // a revision at which the lock was held: the Tx's snapshot
}

// holderRecord is the value of "<name>/holder/<lease>".
type holderRecord struct {
	Host  string    `json:"host"`
	PID   int       `json:"pid"`
	Since time.Time `json:"since"`
	Op    string    `json:"op"`
}

// ctxCode reports whether err is gRPC's form of a context's end or of no
// endpoint answering.
func ctxCode(err error) bool {
	switch status.Code(err) {
	case codes.DeadlineExceeded, codes.Canceled, codes.Unavailable:
		return true
	}
	return false
}

// session returns the backend's live session, granting a new lease (within
// ctx, bounded) when there is none or the old one expired.
func (b *Backend) session(ctx context.Context) (*concurrency.Session, error) {
	b.mu.Lock()
	s := b.sess
	b.mu.Unlock()
	if s != nil {
		select {
		case <-s.Done():
			b.sessionLost(&held{sess: s})
		default:
			return s, nil
		}
	}
	ttl := int64((b.cfg.SessionTTL + time.Second - 1) / time.Second)
	gctx, cancel := b.bounded(ctx)
	defer cancel()
	lease, err := b.cli.Grant(gctx, ttl)
	if err != nil {
		return nil, b.unreachable("lock", err)
	}
	// The session's keep-alive lives with the Backend, not with ctx.
	s, err = concurrency.NewSession(b.cli, concurrency.WithLease(lease.ID), concurrency.WithTTL(int(ttl)), concurrency.WithContext(b.ctx))
	if err != nil {
		return nil, b.unreachable("lock", err)
	}
	b.mu.Lock()
	b.sess = s
	b.mu.Unlock()
	return s, nil
}

// sessionLost forgets h's session (its lease expired or its clean-up
// failed) and revokes it in the background, within the dial timeout.
func (b *Backend) sessionLost(h *held) {
	if h == nil || h.sess == nil {
		return
	}
	b.mu.Lock()
	if b.sess == h.sess {
		b.sess = nil
	}
	b.mu.Unlock()
	b.bg.Add(1)
	go func() {
		defer b.bg.Done()
		b.closeSession(h.sess)
	}()
}

// closeSession revokes s's lease (deleting its lock key and holder record)
// within the dial timeout, and stops its keep-alive.
func (b *Backend) closeSession(s *concurrency.Session) {
	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.DialTimeout)
	defer cancel()
	_, _ = b.cli.Revoke(ctx, s.Lease())
	s.Orphan()
}

// acquire takes the store lock for one writable Tx: the in-process gate,
// then the Mutex, then the holder record (put only while the lock key
// still exists). It gives up when ctx ends or the lock timeout passes
// (lockWait), with a *psbase.LockTimeoutError naming the holder.
func (b *Backend) acquire(ctx context.Context, op string) (*held, error) {
	start := time.Now()
	ctx, cancel := b.lockWait(ctx)
	defer cancel()
	select {
	case b.gate <- struct{}{}:
	case <-ctx.Done():
		return nil, b.timeout(ctx, op, start)
	}
	h, err := b.acquireLocked(ctx, op, start)
	if err != nil {
		<-b.gate
		return nil, err
	}
	return h, nil
}

// lockWait returns ctx bounded by Config.LockTimeout, unless ctx ends
// earlier of its own.
func (b *Backend) lockWait(ctx context.Context) (context.Context, context.CancelFunc) {
	d := b.cfg.LockTimeout
	if d <= 0 || b.cfg.weak.noLockTimeout {
		return context.WithCancel(ctx)
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

func (b *Backend) acquireLocked(ctx context.Context, op string, start time.Time) (*held, error) {
	s, err := b.session(ctx)
	if err != nil {
		return nil, err
	}
	m := concurrency.NewMutex(s, b.l.lockPrefix())
	if err := b.lockMutex(ctx, s, m); err != nil {
		if ctx.Err() != nil {
			return nil, b.timeout(ctx, op, start)
		}
		if err == concurrency.ErrSessionExpired {
			b.sessionLost(&held{sess: s})
		}
		return nil, b.unreachable("lock", err)
	}
	h := &held{sess: s, m: m}
	host, _ := os.Hostname()
	rec, _ := json.Marshal(holderRecord{Host: host, PID: os.Getpid(), Since: time.Now(), Op: op})
	pctx, cancel := b.bounded(ctx)
	defer cancel()
	resp, err := b.cli.Txn(pctx).If(m.IsOwner()).
		Then(clientv3.OpPut(b.l.holderKey(int64(s.Lease())), string(rec), clientv3.WithLease(s.Lease()))).Commit()
	if err != nil || !resp.Succeeded {
		b.unlock(h)
		if err == nil {
			b.sessionLost(h)
			return nil, &LockLostError{Store: b.cfg.Name, LockKey: m.Key(), Lease: int64(s.Lease())}
		}
		if ctx.Err() != nil {
			return nil, b.timeout(ctx, op, start)
		}
		return nil, b.unreachable("lock", err)
	}
	h.rev = resp.Header.Revision
	return h, nil
}

// lockMutex runs m.Lock(ctx) with its clean-up bounded: when ctx ends while
// Lock waits, Lock deletes its key with the client's own context, which
// waits for an endpoint for ever when none answers. Past the dial timeout
// the session is given up instead (its lease then ends the key), and the
// stuck call ends when the Backend closes its client.
func (b *Backend) lockMutex(ctx context.Context, s *concurrency.Session, m *concurrency.Mutex) error {
	done := make(chan error, 1)
	b.bg.Add(1)
	go func() {
		defer b.bg.Done()
		done <- m.Lock(ctx)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	t := time.NewTimer(b.cfg.DialTimeout)
	defer t.Stop()
	select {
	case err := <-done:
		if err == nil { // acquired just as ctx ended: give it back
			b.unlock(&held{sess: s, m: m})
			return ctx.Err()
		}
		return err
	case <-t.C:
		b.sessionLost(&held{sess: s})
		return ctx.Err()
	}
}

// unlock deletes the lock key and the holder record in one Txn, within the
// dial timeout; if that fails the session is given up (the lease's end
// frees the lock).
func (b *Backend) unlock(h *held) {
	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.DialTimeout)
	defer cancel()
	ops := []clientv3.Op{clientv3.OpDelete(h.m.Key())}
	if h.sess != nil {
		ops = append(ops, clientv3.OpDelete(b.l.holderKey(int64(h.sess.Lease()))))
	}
	if _, err := b.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
		b.log.Warn("etcd unlock failed; the session's lease will free the lock", "store", b.cfg.Name, "err", err)
		b.sessionLost(h)
	}
}

// release ends a writable Tx's hold: unlock, then open the gate.
func (b *Backend) release(h *held) {
	b.unlock(h)
	<-b.gate
}

// holderLookup bounds the look-up of the holders for a timeout's error.
const holderLookup = time.Second

// timeout builds the lock-timeout error, naming the holder and the waiters
// as the cluster tells within holderLookup; if it tells nothing, the error
// is an *UnreachableError.
func (b *Backend) timeout(ctx context.Context, op string, start time.Time) error {
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), holderLookup)
	defer cancel()
	holders, err := b.Holders(hctx)
	if err != nil {
		// No endpoint answers either: say that, not "someone holds it".
		return &UnreachableError{Endpoints: b.cfg.Endpoints, Op: "lock", Err: ctx.Err()}
	}
	return &psbase.LockTimeoutError{Path: "etcd:" + b.cfg.Name, Op: op, Exclusive: true,
		Waited: time.Since(start), Holders: holders, Err: ctx.Err()}
}

// Holders reports who holds the store's lock (the first) and who waits for
// it, in the Mutex's FIFO order (creation revision), with each one's holder
// record when it wrote one.
func (b *Backend) Holders(ctx context.Context) ([]psbase.LockHolder, error) {
	ctx, cancel := b.bounded(ctx)
	defer cancel()
	resp, err := b.cli.Get(ctx, b.l.lockPrefix()+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil {
		return nil, b.unreachable("locks", err)
	}
	var out []psbase.LockHolder
	for i, kv := range resp.Kvs {
		h := psbase.LockHolder{Exclusive: true, Waiting: i > 0}
		hexLease := strings.TrimPrefix(string(kv.Key), b.l.lockPrefix()+"/")
		h.Lease = hexLease // the Mutex's key is "<prefix>/<lease in hex>"
		if lease, err := strconv.ParseInt(hexLease, 16, 64); err == nil {
			if r, err := b.cli.Get(ctx, b.l.holderKey(lease)); err == nil && len(r.Kvs) == 1 {
				var rec holderRecord
				if json.Unmarshal(r.Kvs[0].Value, &rec) == nil {
					h.Host, h.PID, h.Since, h.Op = rec.Host, rec.PID, rec.Since, rec.Op
				}
			}
		}
		out = append(out, h)
	}
	return out, nil
}
