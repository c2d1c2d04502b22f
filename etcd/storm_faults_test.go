package etcd

// storm_faults_test.go: storms on etcd with faults — workers SIGKILLed
// mid-operation (storm Chaos; the stall a killed holder causes, measured),
// and members of the cluster SIGKILLed and restarted mid-storm, the leader
// included. The negative control of the kill storm acknowledges an insert
// before its commit and dies there: CheckSet must report it lost.
//
// May touch: the shared test cluster (its members killed and restarted),
// stores of their own names on it, the storm's child processes.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/psbase/psbase"
	"github.com/psbase/psbase/storm"
)

var tagFields = []psbase.Field{{Name: "tag", Type: psbase.String}}

// insertStorm runs procs processes inserting n records each (unique tags)
// into a store with a 2 s session TTL, with chaos, and returns the loop,
// the records read back and the ones CheckSet compares.
func insertStorm(t *testing.T, cfg storm.Config, n int, insert func(w *storm.Worker, s *psbase.Store, tag string, i int) error) (*storm.LoopResult, []storm.Record) {
	t.Helper()
	var urls []string
	if !storm.IsChild() {
		urls = stormCreate(t, "?ttl=2s", tagFields)
	}
	cfg.Args = stormArgs(urls)
	cfg.Timeout = 3 * time.Minute
	res := storm.Run(t, cfg, func(w *storm.Worker) error {
		s, err := workerStore(w)
		if err != nil {
			return err
		}
		defer s.Close()
		for i := range n {
			if err := insert(w, s, fmt.Sprintf("t%d-%d", w.Task, i), i); err != nil {
				return err
			}
		}
		return nil
	})
	l := onlyLoop(t, res)
	s := parentStore(t, urls[0])
	checkStore(t, s)
	ctx, cancel := opCtx()
	defer cancel()
	recs, err := s.Select(ctx, psbase.Query{})
	if err != nil {
		t.Fatal(err)
	}
	var set []storm.Record
	for _, r := range recs {
		set = append(set, storm.Record{ID: r.ID, Value: r.Values["tag"]})
	}
	return l, set
}

// insertOne is the correct insert: acknowledged once Insert returned nil.
func insertOne(w *storm.Worker, s *psbase.Store, tag string, _ int) error {
	ctx, cancel := opCtx()
	defer cancel()
	id := w.Invoke("insert", tag)
	w.Phase("insert")
	rid, err := s.Insert(ctx, psbase.Values{"tag": tag})
	w.Phase("after-commit")
	switch {
	case err == nil:
		w.Ok(id, rid)
	case errors.Is(err, psbase.ErrUnknownOutcome):
		w.Logf("insert %s: %v", tag, err) // left open
	default:
		w.Fail(id, err)
	}
	return nil
}

// longestGap is the longest time between two consecutive acknowledgements
// (from the release to the first, between each pair), and when it ended.
func longestGap(l *storm.LoopResult) (gap, at time.Duration) {
	var rets []int64
	for _, op := range l.History {
		if op.Status == storm.StatusOK {
			rets = append(rets, op.Return)
		}
	}
	slices.Sort(rets)
	prev := l.Released
	for _, r := range rets {
		if d := time.Duration(r - prev); d > gap {
			gap, at = d, time.Duration(r-l.Released)
		}
		prev = r
	}
	return gap, at
}

// TestStormEtcdKill: 16 processes inserting, a quarter SIGKILLed at random
// instants of the first 1.5 s (replaced): every acknowledged insert present once, failed ones
// absent, unknown ones at most once, Check clean. A holder killed with the
// lock blocks the store until its lease (ttl=2s) expires: the longest gap
// between acknowledgements is logged. Control: an insert acknowledged inside
// its transaction, before the commit, by a process that dies right there,
// is reported lost.
func TestStormEtcdKill(t *testing.T) {
	stormSkip(t)
	t.Run("chaos", func(t *testing.T) {
		l, set := insertStorm(t, storm.Config{Procs: 16,
			Chaos: storm.Chaos{KillFraction: 0.25, KillWindow: storm.Window{From: 100 * time.Millisecond, To: 1500 * time.Millisecond}, Replace: true},
		}, 8, insertOne)
		logLoop(t, "kill", l)
		gap, at := longestGap(l)
		var kills []string
		landed := 0
		for _, k := range l.Kills {
			if k.Landed {
				landed++
				kills = append(kills, fmt.Sprintf("+%v in %q", k.After.Round(time.Millisecond), k.Phase))
			}
		}
		t.Logf("kill: %d kills landed (%s); %d records; longest gap between acknowledgements %v, ending +%v after the release (the lease of a killed holder: ttl=2s)",
			landed, strings.Join(kills, ", "), len(set), gap.Round(time.Millisecond), at.Round(time.Millisecond))
		if err := storm.CheckSet(l.History.Key("insert"), set); err != nil {
			t.Error(err)
		}
		if landed == 0 {
			t.Error("no kill landed: the storm proved nothing about kills")
		}
	})
	t.Run("negative_ack_before_commit", func(t *testing.T) {
		l, set := insertStorm(t, storm.Config{Procs: 4, TolerateFailures: true}, 3, func(w *storm.Worker, s *psbase.Store, tag string, i int) error {
			if w.Task != 0 || i != 1 {
				return insertOne(w, s, tag, i)
			}
			ctx, cancel := opCtx()
			defer cancel()
			id := w.Invoke("insert", tag)
			return s.Txn(ctx, func(tx *psbase.Tx) error {
				rid, err := tx.Insert(psbase.Values{"tag": tag})
				if err != nil {
					return err
				}
				w.Ok(id, rid) // acknowledged too early...
				p, _ := os.FindProcess(os.Getpid())
				if err := p.Kill(); err != nil { // ...and the process dies before its commit
					return err
				}
				select {} // never reached: SIGKILL ends the process
			})
		})
		logLoop(t, "kill/negative", l)
		err := storm.CheckSet(l.History.Key("insert"), set)
		an := anomalies(t, err)
		t.Logf("kill/negative (acknowledged before the commit, then SIGKILL): %v", an)
		if countPrefix(an, "lost:") != 1 {
			t.Errorf("negative control: CheckSet did not report the one acknowledged insert that never committed: %v", err)
		}
	})
}

// TestStormEtcdMemberKill: 6 processes increment a counter and read and
// write two registers while members are SIGKILLed and restarted — a
// follower, then the leader — each fault waiting for the storm to make
// progress without the member: the storm completes, the counter is within
// acknowledged..acknowledged+unknown (exact when nothing is unknown),
// the registers' history is linearizable, Check is clean.
func TestStormEtcdMemberKill(t *testing.T) {
	stormSkip(t)
	const procs, maxOps = 6, 600
	fields := []psbase.Field{{Name: "n", Type: psbase.Int}, {Name: "val", Type: psbase.Int}}
	var urls []string
	var faultErr error
	var faults sync.WaitGroup
	var steps []string
	if !storm.IsChild() {
		row := psbase.Values{"n": 0, "val": 0}
		urls = stormCreate(t, "?ttl=2s&dial_timeout=2s", fields, row, row, row)
		t.Cleanup(faults.Wait)
	}
	setup := func(dir string, loop int) error {
		faults.Add(1)
		go func() {
			defer faults.Done()
			defer os.WriteFile(filepath.Join(dir, "stop"), nil, 0o644)
			steps, faultErr = memberFaults(urls[0])
		}()
		return nil
	}
	res := storm.Run(t, storm.Config{Procs: procs, Timeout: 3 * time.Minute, Args: stormArgs(urls), Setup: setup}, func(w *storm.Worker) error {
		s, err := workerStore(w)
		if err != nil {
			return err
		}
		defer s.Close()
		cache := map[int]int64{}
		for i := 0; i < maxOps; i++ {
			if _, err := os.Stat(filepath.Join(w.Dir, "stop")); err == nil {
				return nil
			}
			if k := w.Rand.IntN(4); k < 2 {
				if err := registerOpOn(w, s, fmt.Sprintf("r%d", k), uint64(k+2), i, cache, false, true); err != nil {
					return err
				}
				continue
			}
			id := w.Invoke("counter", 1)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := s.Txn(ctx, func(tx *psbase.Tx) error {
				_, err := tx.Add(counterID, "n", 1)
				return err
			})
			cancel()
			switch {
			case err == nil:
				w.Ok(id, nil)
			case errors.Is(err, psbase.ErrUnknownOutcome):
				w.Logf("increment: %v", err) // left open
			default:
				w.Fail(id, err)
				w.Logf("increment: %v", err)
			}
		}
		return nil
	})
	faults.Wait()
	l := onlyLoop(t, res)
	logLoop(t, "member-kill", l)
	t.Logf("member-kill: faults: %s", strings.Join(steps, "; "))
	if faultErr != nil {
		t.Errorf("fault driver: %v", faultErr)
	}
	s := parentStore(t, urls[0])
	checkStore(t, s)
	final := intField(t, s, counterID, "n")
	hc := l.History.Key("counter")
	t.Logf("member-kill: counter %d: %d acknowledged, %d failed (not applied), %d unknown outcome", final, hc.Count(storm.StatusOK), hc.Count(storm.StatusFail), hc.Count(storm.StatusInfo))
	if err := storm.CheckCounter(hc, final); err != nil {
		t.Error(err)
	}
	var reg storm.History
	for _, op := range l.History {
		if op.Key != "counter" {
			reg = append(reg, op)
		}
	}
	if err := storm.CheckRegister(reg, storm.RegisterOptions{Initial: 0, Dir: res.Dir, Timeout: 20 * time.Second}); err != nil {
		t.Error(err)
	}
	t.Logf("member-kill: %d register ops linearizable", len(reg))
}

// memberFaults drives the member kills while the storm runs: it waits for
// the counter to move, kills a follower, waits for progress without it,
// restarts it, then does the same to the leader (waiting for a new one
// first). Progress is the event waited for, with a deadline.
func memberFaults(url string) (steps []string, err error) {
	c := stormCluster
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := psbase.Open(ctx, url)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	counter := func() int64 {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		r, err := s.Get(rctx, counterID)
		if err != nil {
			return -1
		}
		n, _ := r.Values["n"].(int64)
		return n
	}
	progress := func(d int64, what string) error {
		from := counter()
		for from < 0 {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			from = counter()
		}
		for {
			if n := counter(); n >= from+d {
				steps = append(steps, fmt.Sprintf("%s: counter %d→%d", what, from, n))
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: the counter did not move by %d from %d: %w", what, d, from, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	if err := progress(10, "started"); err != nil {
		return steps, err
	}
	for _, victim := range []string{"follower", "leader"} {
		leader, err := c.WaitLeader(ctx, -1)
		if err != nil {
			return steps, err
		}
		m := leader
		if victim == "follower" {
			m = (leader + 1) % c.Size()
		}
		start := time.Now()
		if err := c.Kill(m); err != nil {
			return steps, err
		}
		steps = append(steps, fmt.Sprintf("SIGKILL member %d (the %s)", m, victim))
		if victim == "leader" {
			nl, err := c.WaitLeader(ctx, m)
			if err != nil {
				return steps, err
			}
			steps = append(steps, fmt.Sprintf("member %d leads after %v", nl, time.Since(start).Round(time.Millisecond)))
		}
		if err := progress(10, "without member "+fmt.Sprint(m)); err != nil {
			return steps, err
		}
		if err := c.Restart(ctx, m); err != nil {
			return steps, err
		}
		steps = append(steps, fmt.Sprintf("member %d restarted", m))
		if err := progress(10, "after the restart"); err != nil {
			return steps, err
		}
	}
	return steps, nil
}
