package etcdkv

// storm_paused_test.go: the paused holder through the whole stack — psbase
// stores on etcd in real storm processes (package storm re-executes this
// test binary). The process holding the store lock is SIGSTOPped until its
// lease expires, another process takes the lock and commits, the first is
// SIGCONTed: its late commit is refused (an error wrapping ErrLockLost,
// nothing written) and the counter stays exact. Negative control: the same
// with the fencing compare off (the weak.noFence knob) — the late commit
// succeeds and an acknowledged update is lost, which CheckCounter reports.
//
// It lives in package etcdkv because the knob is unexported: the test
// registers its own URL scheme, "etcdkvtest", whose opener builds the
// Backend with the knob set from the URL (?nofence=1). Events, not sleeps:
// the holder announces it holds (a file), the parent pauses it and says so,
// the taker commits and announces it, then the parent resumes the holder.
//
// May touch: the shared test cluster, stores of their own names on it, the
// storm's child processes (one paused and resumed), files in the storm's
// loop directory.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/psbase/psbase"
	"github.com/psbase/psbase/etcd/etcdtest"
	"github.com/psbase/psbase/internal/backend"
	"github.com/psbase/psbase/storm"
)

// testScheme is the URL scheme of stores opened with the test knobs.
const testScheme = "etcdkvtest"

func init() { backend.Register(testScheme, openTestURL) }

// openTestURL opens "etcdkvtest://H:P[,H:P]/NAME?ttl=2s[&nofence=1]".
func openTestURL(ctx context.Context, bc backend.Config) (backend.Backend, string, error) {
	rest, query, _ := strings.Cut(strings.TrimPrefix(bc.URL, testScheme+"://"), "?")
	hosts, name, _ := strings.Cut(rest, "/")
	cfg := Config{Endpoints: strings.Split(hosts, ","), Name: name, SessionTTL: 2 * time.Second, Logger: bc.Logger}
	for _, kv := range strings.Split(query, "&") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "":
		case "ttl":
			d, err := time.ParseDuration(v)
			if err != nil {
				return nil, "", fmt.Errorf("%w: ttl=%q", psbase.ErrOption, v)
			}
			cfg.SessionTTL = d
		case "nofence":
			cfg.weak.noFence = v == "1"
		default:
			return nil, "", fmt.Errorf("%w: unknown parameter %q", psbase.ErrOption, k)
		}
	}
	b, err := Open(ctx, cfg)
	if err != nil {
		return nil, "", err
	}
	return b, testScheme + "://" + rest, nil
}

// waitFile waits for a file to exist (an event another process causes),
// polling until the deadline.
func waitFile(path string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no %s within %v", filepath.Base(path), d)
		}
		time.Sleep(5 * time.Millisecond) // polling interval of the wait, not a synchronisation
	}
}

// pausedStorm runs the scenario with two storm tasks: task 0 holds the lock
// (read the counter, then wait), task 1 increments once the parent has
// paused task 0. It returns the history, the final counter and task 0's
// commit error text ("" if it committed).
func pausedStorm(t *testing.T, fence bool) (storm.History, int64, string) {
	var url string
	if !storm.IsChild() {
		c := cluster(t)
		hosts := make([]string, 0, c.Size())
		for _, ep := range c.Endpoints() {
			hosts = append(hosts, strings.TrimPrefix(ep, "http://"))
		}
		url = testScheme + "://" + strings.Join(hosts, ",") + "/" + storeName(t) + "?ttl=2s"
		if !fence {
			url += "&nofence=1"
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := psbase.Create(ctx, url, []psbase.Field{{Name: "n", Type: psbase.Int}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Insert(ctx, psbase.Values{"n": 0}); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	var driveErr error
	done := make(chan struct{})
	setup := func(dir string, loop int) error {
		go func() {
			defer close(done)
			driveErr = drivePause(dir)
		}()
		return nil
	}
	res := storm.Run(t, storm.Config{Procs: 2, Timeout: 2 * time.Minute, Setup: setup, Args: func(int) []string { return []string{url} }}, func(w *storm.Worker) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		s, err := psbase.Open(ctx, w.Args[0])
		if err != nil {
			return err
		}
		defer s.Close()
		if w.Task == 1 {
			if err := waitFile(filepath.Join(w.Dir, "paused"), time.Minute); err != nil {
				return err
			}
		}
		id := w.Invoke("counter", 1)
		err = s.Txn(ctx, func(tx *psbase.Tx) error {
			r, err := tx.Get(1)
			if err != nil {
				return err
			}
			if w.Task == 0 {
				// Holding the lock, the counter read: say so, wait for "go"
				// (the parent writes it before resuming this process).
				w.Phase("holding")
				// Written aside and renamed: the parent must never read a
				// "holding" file that exists but is still empty.
				tmp := filepath.Join(w.Dir, "holding.tmp")
				if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
					return err
				}
				if err := os.Rename(tmp, filepath.Join(w.Dir, "holding")); err != nil {
					return err
				}
				if err := waitFile(filepath.Join(w.Dir, "go"), time.Minute); err != nil {
					return err
				}
			}
			_, err = tx.UpdateByID(1, psbase.Values{"n": r.Values["n"].(int64) + 1})
			return err
		})
		switch {
		case err == nil:
			w.Ok(id, nil)
		case errors.Is(err, ErrLockLost):
			w.Fail(id, err) // refused: nothing written
			w.SetResult(err.Error())
		default:
			return err
		}
		if w.Task == 1 {
			return os.WriteFile(filepath.Join(w.Dir, "took"), nil, 0o644)
		}
		return nil
	})
	<-done
	if driveErr != nil {
		t.Fatalf("driving the pause: %v", driveErr)
	}
	if len(res.Loops) != 1 {
		t.Fatalf("%d loops", len(res.Loops))
	}
	l := res.Loops[0]
	var refused string
	if r := l.Tasks[0].Result; r != nil {
		refused = string(r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := psbase.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := s.Get(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	return l.History, r.Values["n"].(int64), refused
}

// drivePause is the parent's side: when task 0 says it holds, SIGSTOP it
// and tell task 1; when task 1 has committed, write "go" and SIGCONT task 0.
func drivePause(dir string) error {
	holding := filepath.Join(dir, "holding")
	if err := waitFile(holding, time.Minute); err != nil {
		return err
	}
	b, err := os.ReadFile(holding)
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(string(b))
	if err != nil {
		return err
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	if err := etcdtest.Pause(p); err != nil {
		return err
	}
	defer etcdtest.Resume(p)
	if err := os.WriteFile(filepath.Join(dir, "paused"), nil, 0o644); err != nil {
		return err
	}
	// Task 1's Txn gets the lock only once task 0's lease has expired.
	if err := waitFile(filepath.Join(dir, "took"), time.Minute); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		return err
	}
	return etcdtest.Resume(p)
}

func TestStormPausedHolder(t *testing.T) {
	if testing.Short() {
		t.Skip("a process storm on etcd: not in -short")
	}
	if runtime.GOOS == "windows" {
		t.Skip("needs SIGSTOP and process storms")
	}
	t.Run("fenced", func(t *testing.T) {
		h, final, refused := pausedStorm(t, true)
		t.Logf("fenced: counter %d, %d acknowledged; the resumed holder's commit: %s", final, h.Count(storm.StatusOK), refused)
		if refused == "" || !strings.Contains(refused, ErrLockLost.Error()) {
			t.Errorf("the late commit of the paused holder was not refused with ErrLockLost (result %q)", refused)
		}
		if err := storm.CheckCounter(h, final); err != nil {
			t.Error(err)
		}
		if final != 1 || h.Count(storm.StatusOK) != 1 {
			t.Errorf("counter %d, %d acknowledged; want 1 and 1", final, h.Count(storm.StatusOK))
		}
	})
	t.Run("negative_nofence", func(t *testing.T) {
		h, final, refused := pausedStorm(t, false)
		err := storm.CheckCounter(h, final)
		t.Logf("nofence (negative control): counter %d, %d acknowledged, refused %q; CheckCounter: %v", final, h.Count(storm.StatusOK), refused, err)
		if err == nil || refused != "" || h.Count(storm.StatusOK) != 2 || final != 1 {
			t.Errorf("negative control: without the fence the late commit should go through and lose an update (2 acknowledged, counter 1), and CheckCounter say so; got %d acknowledged, counter %d, check %v", h.Count(storm.StatusOK), final, err)
		}
	})
}
