package psbase

// watch_remote.go: Store.Watch on a remote store. The change log is the
// same there (changes.go writes it through the storage seam, in the same
// backend commit as the change), so Changes, Revision and Tx.Revision need
// nothing of their own; only the wake-up differs: no file to watch, so the
// loop waits on the backend's own notification (backend.Feed: etcd's Watch
// on the store's revision key, started at the revision of the loop's last
// read, so no commit of any host is slept through), or, for a backend that
// has none, polls every WithWatchInterval.
//
// May touch: nothing local (the backend's watch streams only).

import (
	"context"
	"fmt"

	"github.com/psbase/psbase/internal/backend"
	"github.com/psbase/psbase/internal/kv"
)

// remoteWake is the part of a waker on a remote store with a backend.Feed.
type remoteWake struct {
	feed backend.Feed
	pos  int64 // where the loop's last read stood in the backend's history
	have bool  // pos is set
}

// newRemoteWaker is newWaker for a remote store.
func (s *Store) newRemoteWaker() *waker {
	w := &waker{wake: make(chan struct{}, 1), def: s.cfg.watchInterval}
	if f, ok := s.remote.(backend.Feed); ok {
		w.rw = &remoteWake{feed: f}
		return w
	}
	w.every = s.cfg.watchInterval
	return w
}

// saw notes the snapshot the loop just read: the next wait starts after it.
func (w *waker) saw(kt kv.Tx) {
	if w.rw == nil {
		return
	}
	if pos, ok := w.rw.feed.Position(kt); ok {
		w.rw.pos, w.rw.have = pos, true
	}
}

// waitRemote sleeps until a commit after the last read changed the store's
// revision key, or the context's end.
func (w *waker) waitRemote(ctx context.Context) error {
	if !w.rw.have {
		return fmt.Errorf("%w: watch: the backend gave no position for its read", ErrUnsupported)
	}
	err := w.rw.feed.WaitChange(ctx, w.rw.pos, [][]byte{bucketMeta}, keyRev)
	if err != nil && ctx.Err() != nil {
		if cause := context.Cause(ctx); cause != ctx.Err() {
			return fmt.Errorf("watch stopped: %w (%v)", ctx.Err(), cause)
		}
		return fmt.Errorf("watch stopped: %w", ctx.Err())
	}
	return err
}
