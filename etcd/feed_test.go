package etcd

// feed_test.go: the change feed on etcd — Watch sees every commit of writer
// processes once, in order, across a member's death; a commit landing
// between the watcher's read and its wait wakes it (the broken variant
// sleeps through it); etcd's compaction loses nothing; a log trimmed past
// the caller is ErrChangesGone.
//
// May touch: the stores the tests name on the test clusters; worker
// processes; one member of the storm's own cluster (killed).

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/psbase/psbase"
	"github.com/psbase/psbase/etcd/etcdtest"
)

var feedFields = []psbase.Field{{Name: "name", Type: psbase.String}, {Name: "n", Type: psbase.Int}}

// allChanges reads the log from since to the store's revision now.
func allChanges(t *testing.T, s *psbase.Store, since uint64) ([]psbase.Change, uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out []psbase.Change
	for {
		ch, rev, err := s.Changes(ctx, since)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ch...)
		if rev == since {
			return out, rev
		}
		since = rev
	}
}

// watcher collects what s.Watch(since) yields until it is stopped.
type watcher struct {
	mu     sync.Mutex
	got    []psbase.Change
	err    error
	more   chan struct{} // poked at every change
	cancel context.CancelFunc
	done   chan struct{}
}

func startWatcher(s *psbase.Store, since uint64, d time.Duration) *watcher {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	w := &watcher{more: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for ch, err := range s.Watch(ctx, since) {
			w.mu.Lock()
			if err != nil {
				w.err = err
			} else {
				w.got = append(w.got, ch)
			}
			w.mu.Unlock()
			select {
			case w.more <- struct{}{}:
			default:
			}
		}
	}()
	return w
}

// until waits until cond holds of what was collected, or the watch ended.
func (w *watcher) until(cond func([]psbase.Change) bool) ([]psbase.Change, error) {
	for {
		w.mu.Lock()
		got, err := append([]psbase.Change(nil), w.got...), w.err
		w.mu.Unlock()
		if cond(got) || err != nil {
			return got, err
		}
		select {
		case <-w.more:
		case <-w.done:
		}
	}
}

func (w *watcher) stop() { w.cancel(); <-w.done }

// reached is a condition: the last change collected is at rev or later.
func reached(rev uint64) func([]psbase.Change) bool {
	return func(c []psbase.Change) bool { return len(c) > 0 && c[len(c)-1].Rev >= rev }
}

// Three writer processes insert while a watcher follows from the store's
// revision; the cluster's leader is killed half-way. The watcher yields
// exactly the log (every revision once, in order, the same Change values).
func TestWatchOnEtcdStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-member etcd cluster")
	}
	cl := etcdtest.Start(t, etcdtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	url := storeURL(t, "etcd", cl, "ttl=2s")
	s, err := psbase.Create(ctx, url, feedFields)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rev0, err := s.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w := startWatcher(s, rev0, 3*time.Minute)
	defer w.stop()
	const writers, each = 3, 25
	var ps []*proc
	for range writers {
		ps = append(ps, spawn(t, "insert", url, fmt.Sprintf("%s=%d", envN, each)))
	}
	if _, err := w.until(func(c []psbase.Change) bool { return len(c) >= each }); err != nil {
		t.Fatal(err)
	}
	leader, err := cl.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Kill(leader); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed member %d (the leader) after the watcher saw %d changes", leader, each)
	for _, p := range ps {
		p.finish(t, 2*time.Minute)
	}
	want, final := allChanges(t, s, rev0)
	got, err := w.until(reached(final))
	if err != nil {
		t.Fatalf("watch: %v (after %d changes)", err, len(got))
	}
	if len(got) != len(want) || final-rev0 < writers*each/2 {
		t.Fatalf("watched %d changes, the log holds %d (revisions %d..%d)", len(got), len(want), rev0+1, final)
	}
	for i := range want {
		if got[i] != want[i] || got[i].Rev != rev0+1+uint64(i) || got[i].Kind != psbase.ChangeInsert {
			t.Fatalf("change %d: watched %v, the log has %v", i, got[i], want[i])
		}
	}
	t.Logf("%d commits of %d processes watched once each, in order, across the leader's death", len(got), writers)
}

// The watcher's first wait has another process commit after the read and
// before the watch starts. The etcd Watch resumes from the read's revision
// and wakes; the broken variant (watch-no-resume: from the revision now)
// sleeps through the commit.
func TestWatchOnEtcdCommitBeforeWait(t *testing.T) {
	cl := sharedCluster(t)
	for _, knob := range []string{"", "watch-no-resume"} {
		t.Run("knob="+knob, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			url := storeURL(t, "etcdweak", cl, "ttl=2s")
			var once sync.Once
			setWeak(knob, func() {
				once.Do(func() { spawn(t, "insert", "etcd"+url[len("etcdweak"):], envN+"=1").finish(t, time.Minute) })
			})
			s, err := psbase.Create(ctx, url, feedFields)
			setWeak("", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			rev0, err := s.Revision(ctx)
			if err != nil {
				t.Fatal(err)
			}
			d := time.Minute
			if knob != "" {
				d = 4 * time.Second // plenty for a wake-up that comes at all
			}
			w := startWatcher(s, rev0, d)
			defer w.stop()
			got, err := w.until(reached(rev0 + 1))
			switch {
			case knob == "" && (err != nil || len(got) != 1 || got[0].Kind != psbase.ChangeInsert):
				t.Fatalf("the commit before the wait: %v %v", got, err)
			case knob != "" && (len(got) != 0 || !errors.Is(err, context.DeadlineExceeded)):
				t.Fatalf("the broken variant saw %v (%v): the test cannot tell it from the resumed watch", got, err)
			}
		})
	}
}

// etcd's compaction does not touch the change log (it is keys of the
// store, not etcd's history): an idle watcher across a Compact at the
// current revision gets the next commit, and one started from before every
// commit after the Compact gets them all. The log's own retention does
// trim: a caller behind it is ErrChangesGone, one within it is not.
func TestChangesOnEtcdCompactionAndRetention(t *testing.T) {
	cl := sharedCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	url := storeURL(t, "etcd", cl, "ttl=2s")
	s, err := psbase.Create(ctx, url, feedFields)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rev0, _ := s.Revision(ctx)
	spawn(t, "insert", url, envN+"=3").finish(t, time.Minute)
	rev1, _ := s.Revision(ctx)
	idle := startWatcher(s, rev1, time.Minute)
	defer idle.stop()
	cli, err := clientv3.New(clientv3.Config{Endpoints: cl.Endpoints(), DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, "compact-here")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	spawn(t, "insert", url, envN+"=1").finish(t, time.Minute)
	if got, err := idle.until(reached(rev1 + 1)); err != nil || len(got) != 1 {
		t.Fatalf("idle watcher across the compaction: %v %v", got, err)
	}
	want, final := allChanges(t, s, rev0)
	late := startWatcher(s, rev0, time.Minute)
	defer late.stop()
	got, err := late.until(reached(final))
	if err != nil || len(got) != len(want) || len(want) != 4 {
		t.Fatalf("watch from before the compaction: %v %v; the log: %v", got, err, want)
	}

	// Retention: 4 revisions kept.
	url2 := storeURL(t, "etcd", cl, "ttl=2s")
	r, err := psbase.Create(ctx, url2, feedFields, psbase.WithChangeRetention(4, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Insert(ctx, psbase.Values{"name": "first"}); err != nil { // records the retention
		t.Fatal(err)
	}
	spawn(t, "insert", url2, envN+"=7").finish(t, time.Minute)
	now, _ := r.Revision(ctx)
	if _, _, err := r.Changes(ctx, now-8); !errors.Is(err, psbase.ErrChangesGone) {
		t.Fatalf("changes from behind the retention: %v", err)
	}
	if ch, _, err := r.Changes(ctx, now-3); err != nil || len(ch) != 3 {
		t.Fatalf("changes within the retention (the control): %v %v", ch, err)
	}
	for _, err := range r.Watch(ctx, now-8) {
		if !errors.Is(err, psbase.ErrChangesGone) {
			t.Fatalf("watch from behind the retention: %v", err)
		}
		break
	}
}
