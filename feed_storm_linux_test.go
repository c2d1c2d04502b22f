//go:build linux

package psbase

// The change feed under process storms: 20 writer processes (single writes
// combined by group commit, Txn transactions, DDL) and 3 watcher processes
// (Store.Watch from revision 0), all real OS processes. Every watcher must
// see every committed change exactly once, in revision order, and nothing
// else; with writers SIGKILLed mid-commit, nothing that a final read of the
// store does not have. Negative controls break the feed three ways and
// assert that the same checks catch it, quickly.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/psbase/psbase/storm"
)

const (
	feedWriters  = 20
	feedWatchers = 3
	// feedStuck is how long a watcher may trail the store's final
	// revision once every writer is done: far beyond a wake-up's
	// milliseconds, and short, so a feed that never wakes fails fast.
	feedStuck = 3 * time.Second
)

// feedWriterResult is what a writer of TestFeedStorm acknowledged.
type feedWriterResult struct {
	Acks         []Change // Rev unknown (0): the kind and ID of each acknowledged change
	Batches, Ops uint64
}

// feedWatcherResult is what a watcher saw.
type feedWatcherResult struct {
	Seen []Change
}

func feedDB(dir string) string { return filepath.Join(dir, "feed.db") }

// feedMark writes a marker file of the loop's directory (done-N, died-N).
func feedMark(w *storm.Worker, what string) {
	_ = os.WriteFile(filepath.Join(w.Dir, fmt.Sprintf("%s-%d", what, w.Task)), nil, 0o644)
}

// feedWritersGone reports whether every writer left a done or died marker.
func feedWritersGone(dir string) bool {
	for i := range feedWriters {
		_, e1 := os.Stat(filepath.Join(dir, fmt.Sprintf("done-%d", i)))
		_, e2 := os.Stat(filepath.Join(dir, fmt.Sprintf("died-%d", i)))
		if e1 != nil && e2 != nil {
			return false
		}
	}
	return true
}

// feedWatch is a watcher task: it watches from revision 0 until every
// writer is gone and it has seen the store's final revision, or fails
// feedStuck after that if it never gets there.
func feedWatch(w *storm.Worker, noWake bool) error {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	s, err := Open(ctx, feedDB(w.Dir), WithLockTimeout(time.Minute))
	if err != nil {
		return err
	}
	defer s.Close()
	s.cfg.weak.watchNoWake = noWake
	var last, target atomic.Uint64
	target.Store(^uint64(0))
	go func() {
		for !feedWritersGone(w.Dir) {
			time.Sleep(20 * time.Millisecond)
		}
		rev, err := s.Revision(ctx)
		if err != nil {
			cancel(err)
			return
		}
		target.Store(rev)
		deadline := time.Now().Add(feedStuck)
		for last.Load() < rev && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		cancel(errors.New("done"))
	}()
	var res feedWatcherResult
	w.Phase("watch")
	for c, err := range s.Watch(ctx, 0) {
		if err != nil {
			if ctx.Err() == nil {
				return err
			}
			break
		}
		res.Seen = append(res.Seen, c)
		last.Store(c.Rev)
	}
	if err := w.SetResult(res); err != nil {
		return err
	}
	if t := target.Load(); last.Load() < t {
		return fmt.Errorf("stuck: the watcher saw up to revision %d, the store is at %d, %v after the last writer finished", last.Load(), t, feedStuck)
	}
	return nil
}

// TestFeedStorm: 20 writers and 3 watchers. Writers insert, update and
// delete their own records with single calls (group commit combines them
// across processes), run Txn transactions of several changes, and one adds
// fields (DDL). Every watcher sees exactly the acknowledged changes, each
// once, in revision order, every revision from 1 to the final one, and all
// three the same sequence. The negative controls: combined batches left out
// of the log (caught: acknowledged changes missing), and watchers that are
// never woken (caught: they fail, feedStuck after the writers).
func TestFeedStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("process storm")
	}
	run := func(t *testing.T, mode string) (*storm.LoopResult, []string) {
		res := storm.Run(t, storm.Config{
			Procs:            feedWriters + feedWatchers,
			Timeout:          time.Minute,
			TolerateFailures: mode != "",
			Setup: func(dir string, loop int) error {
				_, err := Create(context.Background(), feedDB(dir), feedFields)
				return err
			},
		}, func(w *storm.Worker) error {
			if w.Task >= feedWriters {
				return feedWatch(w, mode == "no_wake")
			}
			return feedWrite(w, mode == "skip_combined")
		})
		if len(res.Loops) == 0 {
			return nil, nil
		}
		l := res.Loops[0]
		return l, feedVerify(t, l, false)
	}
	t.Run("storm", func(t *testing.T) {
		l, bad := run(t, "")
		if l == nil {
			return
		}
		for _, b := range bad {
			t.Error(b)
		}
		t.Logf("wall %v", l.Wall)
	})
	t.Run("negative_skip_combined", func(t *testing.T) {
		l, bad := run(t, "skip_combined")
		if l == nil {
			return
		}
		if len(bad) == 0 {
			t.Fatal("negative control: combined batches left out of the log, and no watcher missed anything")
		}
		t.Logf("caught, as it must be (%v): %s", l.Wall, bad[0])
	})
	t.Run("negative_no_wake", func(t *testing.T) {
		l, _ := run(t, "no_wake")
		if l == nil {
			return
		}
		stuck := 0
		for _, tr := range l.Tasks {
			if tr.Task >= feedWriters && strings.Contains(tr.Err+tr.Stderr, "stuck") {
				stuck++
			}
		}
		if stuck != feedWatchers {
			t.Fatalf("negative control: %d of %d watchers that are never woken failed as stuck", stuck, feedWatchers)
		}
		t.Logf("caught, as it must be: %d watchers stuck, the storm over in %v", stuck, l.Wall)
	})
}

// feedWrite is a writer task of TestFeedStorm.
func feedWrite(w *storm.Worker, skipCombined bool) error {
	ctx := context.Background()
	s, err := Open(ctx, feedDB(w.Dir), WithLockTimeout(time.Minute))
	if err != nil {
		return err
	}
	defer s.Close()
	s.cfg.weak.feedSkipCombined = skipCombined
	var res feedWriterResult
	ack := func(k ChangeKind, id uint64) { res.Acks = append(res.Acks, Change{Kind: k, ID: id}) }
	var mine []uint64
	for i := range 12 {
		tag := fmt.Sprintf("t%d-%d", w.Task, i)
		w.Phase("in-op")
		switch {
		case w.Task == 0 && i == 6:
			if err := s.AddField(ctx, Field{Name: fmt.Sprint("x", i), Type: String, Nullable: true}, ""); err != nil {
				return err
			}
			ack(ChangeSchema, 0)
		case i%6 == 3 && len(mine) > 0:
			id := mine[w.Rand.IntN(len(mine))]
			if _, err := s.UpdateByID(ctx, id, Values{"n": i}); err != nil {
				return err
			}
			ack(ChangeUpdate, id)
		case i%6 == 4 && len(mine) > 0:
			up := mine[w.Rand.IntN(len(mine))]
			var id uint64
			err := s.Txn(ctx, func(tx *Tx) error {
				var err error
				if id, err = tx.Insert(Values{"tag": tag}); err != nil {
					return err
				}
				_, err = tx.Add(up, "n", 1)
				return err
			})
			if err != nil {
				return err
			}
			ack(ChangeInsert, id)
			ack(ChangeUpdate, up)
			mine = append(mine, id)
		case i%6 == 5 && len(mine) > 1:
			j := w.Rand.IntN(len(mine))
			id := mine[j]
			if _, err := s.Delete(ctx, id); err != nil {
				return err
			}
			ack(ChangeDelete, id)
			mine = slices.Delete(mine, j, j+1)
		default:
			id, err := s.Insert(ctx, Values{"tag": tag, "n": i})
			if err != nil {
				return err
			}
			ack(ChangeInsert, id)
			mine = append(mine, id)
		}
	}
	w.Phase("done")
	st, err := s.Stats(ctx)
	if err != nil {
		return err
	}
	res.Batches, res.Ops = st.CombinedBatches, st.CombinedOps
	feedMark(w, "done")
	return w.SetResult(res)
}

// feedVerify checks what the watchers of a feed storm saw against the
// final store and (unless kills made the writers' results partial) what
// the writers acknowledged. It returns every anomaly.
func feedVerify(t *testing.T, l *storm.LoopResult, killed bool) []string {
	t.Helper()
	ctx := context.Background()
	s, err := Open(ctx, feedDB(l.Dir))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if rep, err := s.Check(ctx); err != nil || !rep.OK() {
		t.Errorf("Check: %v %v", err, rep.Problems)
	}
	final, rev := map[uint64]bool{}, uint64(0)
	err = s.View(ctx, func(tx *Tx) error {
		rev = tx.Revision()
		for r, err := range tx.All(Query{}) {
			if err != nil {
				return err
			}
			final[r.ID] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var bad []string
	add := func(format string, args ...any) {
		if len(bad) < 20 {
			bad = append(bad, fmt.Sprintf(format, args...))
		}
	}
	// What the writers acknowledged, as a multiset of kind and ID.
	want := map[Change]int{}
	var batches, ops uint64
	for _, tr := range l.Tasks {
		if tr.Task >= feedWriters || len(tr.Result) == 0 {
			continue
		}
		var r feedWriterResult
		if err := json.Unmarshal(tr.Result, &r); err != nil {
			t.Fatalf("writer %d: %v", tr.Task, err)
		}
		for _, a := range r.Acks {
			want[a]++
		}
		batches += r.Batches
		ops += r.Ops
	}
	var first []Change
	watchers := 0
	for _, tr := range l.Tasks {
		if tr.Task < feedWriters || len(tr.Result) == 0 {
			continue
		}
		watchers++
		var r feedWatcherResult
		if err := json.Unmarshal(tr.Result, &r); err != nil {
			t.Fatalf("watcher %d: %v", tr.Task, err)
		}
		who := fmt.Sprintf("watcher %d", tr.Task)
		// In revision order, every revision from 1 to the final one
		// (each has at least one change), no change twice.
		prev, inserted := uint64(0), map[uint64]uint64{}
		seen := map[Change]int{}
		live := map[uint64]bool{}
		for _, c := range r.Seen {
			switch {
			case c.Rev < prev:
				add("%s: revision %d after %d: out of order", who, c.Rev, prev)
			case c.Rev > prev+1:
				add("%s: revisions %d to %d never seen", who, prev+1, c.Rev-1)
			}
			prev = max(prev, c.Rev)
			if c.Kind == ChangeInsert {
				if at, dup := inserted[c.ID]; dup {
					add("%s: record %d reported inserted at revision %d and again at %d: the first was never committed", who, c.ID, at, c.Rev)
				}
				inserted[c.ID] = c.Rev
				live[c.ID] = true
			}
			if c.Kind == ChangeDelete {
				delete(live, c.ID)
			}
			seen[Change{Kind: c.Kind, ID: c.ID}]++
		}
		if prev != rev {
			add("%s: saw up to revision %d, the store is at %d", who, prev, rev)
		}
		// Nothing the final read lacks, nothing it has unreported.
		for id := range live {
			if !final[id] {
				add("%s: reported record %d inserted (and not deleted), but the store does not have it: an uncommitted change", who, id)
			}
		}
		for id := range final {
			if !live[id] {
				add("%s: the store has record %d, never reported inserted", who, id)
			}
		}
		if !killed {
			for c, n := range want {
				if seen[c] != n {
					add("%s: %s of record %d acknowledged %d time(s), seen %d", who, c.Kind, c.ID, n, seen[c])
				}
			}
			for c, n := range seen {
				if want[c] == 0 {
					add("%s: %s of record %d seen %d time(s), never acknowledged", who, c.Kind, c.ID, n)
				}
			}
		}
		if first == nil {
			first = r.Seen
		} else if !slices.Equal(first, r.Seen) {
			add("%s saw another sequence than the first watcher", who)
		}
	}
	if watchers != feedWatchers {
		add("%d watchers reported, want %d", watchers, feedWatchers)
	}
	if !killed && ops <= batches {
		add("no combined batch held more than one operation (%d operations in %d batches): group commit was not exercised", ops, batches)
	}
	t.Logf("final revision %d, %d records, %d changes seen by each watcher; writers combined %d operations in %d batches", rev, len(final), len(first), ops, batches)
	return bad
}

// TestFeedStormKill: 20 writers inserting through group commit, a third of
// them SIGKILLed at random instants and two at chosen points of a combined
// commit (its requests taken, before the commit; after the commit, before
// its results are published), while 3 watchers follow the store. What the
// watchers report is exactly what a final read of the store has: no
// change of a commit that never completed, none of a completed one
// missing; every acknowledged insert among them. The negative control
// commits a batch's log entry in a transaction of its own, before the data,
// and kills combiners between the two: the watchers then report changes
// the store never got, and the check must say so.
func TestFeedStormKill(t *testing.T) {
	if testing.Short() {
		t.Skip("process storm")
	}
	run := func(t *testing.T, logFirst bool) (*storm.LoopResult, []string) {
		res := storm.Run(t, storm.Config{
			Procs:            feedWriters + feedWatchers,
			Timeout:          time.Minute,
			TolerateFailures: true,
			Setup: func(dir string, loop int) error {
				_, err := Create(context.Background(), feedDB(dir), feedFields)
				return err
			},
		}, func(w *storm.Worker) error {
			if w.Task >= feedWriters {
				return feedWatch(w, false)
			}
			return feedKillWrite(w, logFirst)
		})
		if len(res.Loops) == 0 {
			return nil, nil
		}
		l := res.Loops[0]
		for _, tr := range l.Tasks {
			died := false
			if _, err := os.Stat(filepath.Join(l.Dir, fmt.Sprintf("died-%d", tr.Task))); err == nil {
				died = true
			}
			if tr.Failed() && !died {
				t.Errorf("task %d failed: %s\n%s", tr.Task, tr.Err, tr.Stderr)
			}
		}
		bad := feedVerify(t, l, true)
		// Every acknowledged insert is in the store (and so, by
		// feedVerify, reported): the kills lost no acknowledged write.
		s, err := Open(context.Background(), feedDB(l.Dir))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for _, op := range l.History.Key("insert") {
			if op.Status != storm.StatusOK {
				continue
			}
			var id uint64
			json.Unmarshal(op.Output, &id)
			if _, err := s.Get(context.Background(), id); err != nil {
				bad = append(bad, fmt.Sprintf("acknowledged insert %s as record %d: %v", op.Input, id, err))
			}
		}
		died, _ := filepath.Glob(filepath.Join(l.Dir, "died-*"))
		phases := map[string]int{}
		for _, tr := range l.Tasks {
			if _, err := os.Stat(filepath.Join(l.Dir, fmt.Sprintf("died-%d", tr.Task))); err == nil {
				phases[tr.Phase]++
			}
		}
		t.Logf("%d writers killed (by phase: %v), %d inserts acknowledged, %d unknown, wall %v", len(died), phases, l.History.Count(storm.StatusOK), l.History.Count(storm.StatusInfo), l.Wall)
		if len(died) == 0 {
			t.Error("no writer was killed: the storm tested nothing")
		}
		return l, bad
	}
	t.Run("storm", func(t *testing.T) {
		_, bad := run(t, false)
		for _, b := range bad {
			t.Error(b)
		}
	})
	t.Run("negative_log_first", func(t *testing.T) {
		l, bad := run(t, true)
		if l == nil {
			return
		}
		if len(bad) == 0 {
			t.Fatal("negative control: log entries committed before their data, combiners killed between, and no watcher reported an uncommitted change")
		}
		t.Logf("caught, as it must be: %s", bad[0])
	})
}

// feedKillWrite is a writer of TestFeedStormKill: it inserts through group
// commit until it is done or killed. A third of the writers kill
// themselves (SIGKILL) at a random instant; writers 0 and 1 at a chosen
// point of a combined commit; with logFirst, writers 0 to 2 between the
// log's commit and the data's.
func feedKillWrite(w *storm.Worker, logFirst bool) error {
	ctx := context.Background()
	s, err := Open(ctx, feedDB(w.Dir), WithLockTimeout(time.Minute))
	if err != nil {
		return err
	}
	defer s.Close()
	die := func() {
		feedMark(w, "died")
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
	}
	s.cfg.weak.feedLogFirst = logFirst
	stage := map[int]string{0: "taken", 1: "committed"}[w.Task]
	if logFirst && w.Task < 3 {
		stage = "logged"
	}
	if stage != "" {
		s.cfg.weak.gcStage = func(st string, others int) {
			if st == stage && (others > 0 || st == "logged") {
				die()
			}
		}
	} else if w.Rand.IntN(3) == 0 {
		time.AfterFunc(time.Duration(10+w.Rand.IntN(300))*time.Millisecond, die)
	}
	// Every writer outlives the kill instants (up to 310 ms), so each
	// scheduled kill lands while it writes.
	start := time.Now()
	for i := 0; i < 25 || time.Since(start) < 400*time.Millisecond; i++ {
		tag := fmt.Sprintf("t%d-%d", w.Task, i)
		op := w.Invoke("insert", tag)
		w.Phase("in-op")
		id, err := s.Insert(ctx, Values{"tag": tag, "n": i})
		if err != nil {
			return err
		}
		w.Ok(op, id)
	}
	w.Phase("done")
	feedMark(w, "done")
	return nil
}
