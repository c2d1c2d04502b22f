package psbase

// watch.go: Store.Watch, the change feed as a blocking iterator. It reads
// the change log (changes.go) under short shared locks, and between reads
// sleeps until the file system says the store's file changed (fsnotify on
// the store's directory, filtered by the file's name, since Cleanup and
// Restore rename a new file over it), or, where it cannot say (fsnotify
// failed, a network file system), until a bounded polling interval passed.
// It never busy-polls.
//
// May touch: the store's directory, watched (an inotify instance or the
// system's equivalent, closed when the loop ends); the store only through
// read transactions of Store.run.

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watch follows the store's changes: it yields every change committed after
// revision since, in revision order (as Changes orders them), and when it
// has yielded everything committed so far it blocks until another process
// (or goroutine) commits more, then yields that. Each change is yielded
// exactly once, and only once its commit is durable: the log's entry is
// written in the same transaction as the change.
//
//	rev, _ := s.Revision(ctx)
//	for ch, err := range s.Watch(ctx, rev) {
//		if err != nil { ... }   // the last value: the loop ends
//		...                     // ch.Rev, ch.Kind, ch.ID
//	}
//
// Watch wakes on the file system's word that the store's file changed
// (fsnotify watching its directory), so a commit reaches the loop within
// milliseconds and an idle watcher costs nothing. When the file system
// cannot tell (fsnotify cannot start: no inotify instance or watch left, an
// unsupported system; or a store opened WithAllowNetworkFS, where writes of
// other machines raise no event here) it also reads the store's revision
// every WithWatchInterval (default one second). On a remote store it wakes
// on the backend's own notification of a commit from any host (etcd: its
// Watch, resumed from the revision of the loop's last read; see
// watch_remote.go), or polls where the backend has none.
//
// An error is yielded once, last: the context's end (wrapping ctx.Err()), a
// *ChangesGoneError (ErrChangesGone) when since, or the loop itself, fell
// behind the log's retention or the store was restored or replaced (resync,
// then watch again from its Rev), or an error of the store. A lock that
// cannot be had within the lock timeout (a writer holding it long) is not
// an error here: Watch keeps trying until its context ends.
//
// Watch is an iterator rather than a channel so that it owns nothing the
// caller has to drain or close: breaking out of the loop, or the context
// ending, releases everything (the directory watch, its goroutine) before
// the loop statement returns. On a store of format 3 or older Watch first
// upgrades it, as Changes does.
func (s *Store) Watch(ctx context.Context, since uint64) iter.Seq2[Change, error] {
	return func(yield func(Change, error) bool) {
		if ctx == nil {
			ctx = context.Background()
		}
		// The wake-up source first, the first read second: a commit
		// between the two wakes the loop instead of being slept through.
		w := s.newWaker()
		defer w.close()
		var id string
		for {
			var (
				changes []Change
				rev     uint64
				more    bool
			)
			err := s.feedView(ctx, "watch", func(tx *Tx) error {
				if now := tx.storeID(); id == "" {
					id = now
				} else if now != id {
					return &ChangesGoneError{Since: since, Oldest: u64(tx.meta.Get(keyLogBase)), Rev: tx.Revision(),
						Reason: "the store was replaced by another (restored from a backup, or a different file)"}
				}
				w.saw(tx.kt)
				var err error
				changes, rev, more, err = tx.changesSince(since, ChangesPage)
				return err
			})
			switch {
			case err == nil:
			case errors.Is(err, ErrLockTimeout) && ctx.Err() == nil:
				s.logf(ctx, slog.LevelWarn, "watch: the store's lock was busy; trying again", "err", err)
				more = false
			default:
				yield(Change{}, wrapErr("watch", s.path, err))
				return
			}
			for _, c := range changes {
				if !yield(c, nil) {
					return
				}
			}
			since = max(since, rev)
			if more {
				continue
			}
			if err := w.wait(ctx); err != nil {
				yield(Change{}, wrapErr("watch", s.path, err))
				return
			}
		}
	}
}

// waker is what a Watch loop sleeps on between reads: the store's directory
// watched through fsnotify (its events filtered by the store's file name,
// relayed by one goroutine into wake), a polling interval where events
// cannot be had, or both.
type waker struct {
	fw    *fsnotify.Watcher
	wake  chan struct{} // capacity 1: one pending wake-up is as good as many
	done  sync.WaitGroup
	every time.Duration // 0: no polling
	def   time.Duration // the polling interval (WithWatchInterval)

	mu     sync.Mutex
	failed bool // fsnotify stopped working: poll from now on

	rw *remoteWake // a remote store's backend notification (watch_remote.go)
}

// newWaker sets up the wake-up sources of a Watch loop.
func (s *Store) newWaker() *waker {
	w := &waker{wake: make(chan struct{}, 1), def: s.cfg.watchInterval}
	if s.cfg.weak.watchNoWake {
		return w // the negative control: nothing will ever wake it
	}
	if s.remote != nil {
		return s.newRemoteWaker()
	}
	if s.cfg.allowNetworkFS {
		w.every = s.cfg.watchInterval // another machine's writes raise no event here
	}
	if s.cfg.weak.watchNoNotify {
		w.every = s.cfg.watchInterval
		return w
	}
	fw, err := fsnotify.NewWatcher()
	if err == nil {
		if err = fw.Add(filepath.Dir(s.path)); err != nil {
			_ = fw.Close()
		}
	}
	if err != nil {
		s.logf(context.Background(), slog.LevelWarn, "watch: no file-system events, polling instead", "every", s.cfg.watchInterval, "err", err)
		w.every = s.cfg.watchInterval
		return w
	}
	w.fw = fw
	w.done.Add(1)
	go w.relay(s, filepath.Base(s.path))
	return w
}

// relay turns the directory's events about the store's file into wake-ups.
// An error of the watch (its queue overflowed: events were lost) wakes the
// loop too; a watch that ends (its directory went away) switches the loop
// to polling.
func (w *waker) relay(s *Store, name string) {
	defer w.done.Done()
	for {
		select {
		case ev, ok := <-w.fw.Events:
			if !ok {
				w.fail()
				return
			}
			if filepath.Base(ev.Name) == name {
				w.poke()
			}
		case err, ok := <-w.fw.Errors:
			if !ok {
				w.fail()
				return
			}
			if !errors.Is(err, fsnotify.ErrEventOverflow) {
				s.logf(context.Background(), slog.LevelWarn, "watch: file-system events failed", "err", err)
			}
			w.poke()
		}
	}
}

// poke wakes the loop (or leaves one wake-up pending for it).
func (w *waker) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// fail switches the loop to polling, and wakes it to look now.
func (w *waker) fail() {
	w.mu.Lock()
	w.failed = true
	w.mu.Unlock()
	w.poke()
}

// interval is how long the loop may sleep without an event: 0 for as long
// as it takes.
func (w *waker) interval() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failed && w.every == 0 {
		w.every = w.def
	}
	return w.every
}

// wait sleeps until a wake-up, the polling interval, or the context's end
// (its error).
func (w *waker) wait(ctx context.Context) error {
	if w.rw != nil {
		return w.waitRemote(ctx)
	}
	var tick <-chan time.Time
	if d := w.interval(); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		tick = t.C
	}
	select {
	case <-ctx.Done():
		if cause := context.Cause(ctx); cause != ctx.Err() {
			return fmt.Errorf("watch stopped: %w (%v)", ctx.Err(), cause)
		}
		return fmt.Errorf("watch stopped: %w", ctx.Err())
	case <-w.wake:
	case <-tick:
	}
	return nil
}

// close ends the directory watch and waits for its relay to return.
func (w *waker) close() {
	if w.fw != nil {
		_ = w.fw.Close()
		w.done.Wait()
	}
}
