package psbase

// metrics_remote.go: the lock wait of a remote store's transactions, for
// Metrics (LockWait) and the observer's Event.Wait, as a local store
// reports its file lock's.
//
// May touch: nothing (counters in memory).

import (
	"time"

	"github.com/psbase/psbase/internal/backend"
	"github.com/psbase/psbase/internal/kv"
)

// lockWaiter is a backend transaction that says how long its Begin waited
// for the store's lock (0 for a read-only one, which takes none).
type lockWaiter interface{ LockWaited() time.Duration }

// remoteWait returns how long kt waited for the lock and records a
// writable one's wait in the lock-wait histogram.
func (s *Store) remoteWait(kt kv.Tx) time.Duration {
	lw, ok := kt.(lockWaiter)
	if !ok || !kt.Writable() || backend.WeakNoRemoteWait.Load() {
		return 0
	}
	d := lw.LockWaited()
	s.lastWait.Store(int64(d))
	s.met.lockWait.observe(d.Seconds())
	return d
}
