package etcdkv

// cleanup.go: Cleanup of a store on etcd — the store's own dead keys
// removed under its lock, in fenced transactions. Dead keys (etcd/FORMAT.md)
// are the "d/" and "s/" keys of a bucket whose marker is gone and the
// holder records whose lock key is gone; the record layer never leaves
// them, but a crashed tool or an old bug could. Cleanup never compacts
// the cluster: compaction is the operator's, it covers every key of every
// store at once, and it would end other stores' snapshots and watches.
//
// May touch: the store's keys in etcd (reads; deletes of dead keys only).

import (
	"context"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/psbase/psbase/internal/backend"
)

// CleanupResult is what Cleanup found and did.
type CleanupResult = backend.CleanupResult

// cleanupPage is how many keys one read of Cleanup's walk returns.
const cleanupPage = 1000

// Cleanup deletes the store's dead keys under the store's lock (ctx and
// Config.LockTimeout bound the wait) and reports the store's size.
func (b *Backend) Cleanup(ctx context.Context) (CleanupResult, error) {
	var res CleanupResult
	t, err := b.begin(ctx, true, "cleanup")
	if err != nil {
		return res, err
	}
	defer t.Rollback()
	var keys []string
	sizes := map[string]int64{}
	markers, locks := map[string]bool{}, map[string]bool{}
	from, end := b.l.prefix, rangeEnd(b.l.prefix)
	for {
		resp, err := b.cli.Get(ctx, from, clientv3.WithRange(end), clientv3.WithRev(t.rev), clientv3.WithLimit(cleanupPage))
		if err != nil {
			return res, b.unreachable("cleanup", err)
		}
		for _, kv := range resp.Kvs {
			k := string(kv.Key)
			n := int64(len(kv.Key) + len(kv.Value))
			res.Before += n
			sizes[k] = n
			keys = append(keys, k)
			rel := strings.TrimPrefix(k, b.l.prefix)
			switch {
			case strings.HasPrefix(rel, "b/"):
				markers[rel[2:]] = true
			case strings.HasPrefix(rel, "lock/"):
				locks[rel[len("lock/"):]] = true
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	res.Keys = len(keys)
	var dead []string
	for _, k := range keys {
		rel := strings.TrimPrefix(k, b.l.prefix)
		switch {
		case strings.HasPrefix(rel, "d/"):
			enc, _, _ := strings.Cut(rel[2:], ":")
			if !markers[enc] || b.cfg.weak.cleanupAll {
				dead = append(dead, k)
			}
		case strings.HasPrefix(rel, "s/"):
			if !markers[rel[2:]] || b.cfg.weak.cleanupAll {
				dead = append(dead, k)
			}
		case strings.HasPrefix(rel, "holder/"):
			if !locks[rel[len("holder/"):]] {
				dead = append(dead, k)
			}
		}
	}
	res.After = res.Before
	max := b.cfg.MaxTxnOps
	for len(dead) > 0 {
		n := min(len(dead), max)
		ops := make([]clientv3.Op, n)
		for i, k := range dead[:n] {
			ops[i] = clientv3.OpDelete(k)
		}
		resp, err := b.cli.Txn(ctx).If(t.held.m.IsOwner()).Then(ops...).Commit()
		if err != nil {
			return res, b.unreachable("cleanup", err)
		}
		if !resp.Succeeded {
			b.sessionLost(t.held)
			return res, &LockLostError{Store: b.cfg.Name, LockKey: t.held.m.Key(), Lease: int64(t.held.sess.Lease())}
		}
		for _, k := range dead[:n] {
			res.After -= sizes[k]
		}
		res.Removed += n
		dead = dead[n:]
	}
	return res, nil
}
