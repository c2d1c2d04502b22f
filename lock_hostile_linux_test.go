//go:build linux

package psbase

// Hostile lock and gate files (LOCKING.md, traps T18 to T22): links, FIFOs,
// directories and foreign files where the lock files belong, lock files
// deleted while held, a missing store, a stopped gate holder.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gofrs/flock"
	"github.com/psbase/psbase/internal/lock"
)

// waitFor polls cond until it holds or 10 s pass (an event, not a delay).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// holdLong runs a write transaction that lasts until the holder record was
// written somewhere (seen through recorded), or returns its error.
func holdLong(s *Store, recorded func() bool) error {
	return s.Txn(context.Background(), func(tx *Tx) error {
		deadline := time.Now().Add(2 * time.Second)
		for !recorded() && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		_, err := tx.Insert(Values{"name": "long"})
		return err
	})
}

// TestLockFileLinks (T18, T19): a symbolic link, a hard link, a FIFO, a
// directory in place of the lock or gate file is refused with ErrUnsafePath
// in bounded time, and the file it points at is never written. The negative
// control opens lock files the old way (by path, following links): a long
// write then writes its holder record into the victim, and the release
// empties it.
func TestLockFileLinks(t *testing.T) {
	ctx := context.Background()
	for _, which := range []string{suffixLock, suffixGate} {
		for _, kind := range []string{"symlink", "hardlink", "hardlink-db", "fifo", "dir"} {
			t.Run(strings.TrimPrefix(which, ".")+"/"+kind, func(t *testing.T) {
				s, db := newTestStore(t, WithLockTimeout(2*time.Second))
				mustInsert(t, s, Values{"name": "x"})
				victim := filepath.Join(filepath.Dir(db), "victim.txt")
				if err := os.WriteFile(victim, []byte("precious data\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				hv, hdb := fileHash(t, victim), fileHash(t, db)
				p := db + which
				os.Remove(db + suffixLock)
				os.Remove(db + suffixGate)
				var err error
				switch kind {
				case "symlink":
					err = os.Symlink(victim, p)
				case "hardlink":
					err = os.Link(victim, p)
				case "hardlink-db":
					err = os.Link(db, p)
				case "fifo":
					err = syscall.Mkfifo(p, 0o644)
				case "dir":
					err = os.Mkdir(p, 0o755)
				}
				if err != nil {
					t.Fatal(err)
				}
				s2, err := Open(ctx, db)
				if err == nil {
					_, err = s2.Insert(ctx, Values{"name": "y"})
					if err == nil {
						_, err = s2.Get(ctx, 1)
					}
				}
				if kind == "hardlink-db" {
					// The db has two names now: refused as a store too.
					if !errors.Is(err, ErrUnsafePath) {
						t.Errorf("%v, want ErrUnsafePath", err)
					}
				} else if !errors.Is(err, ErrUnsafePath) {
					t.Errorf("%v, want ErrUnsafePath", err)
				}
				if err := holdLong(s, func() bool { return false }); !errors.Is(err, ErrUnsafePath) {
					t.Errorf("long write: %v, want ErrUnsafePath", err)
				}
				if got := fileHash(t, victim); got != hv {
					t.Error("the victim file was changed")
				}
				if kind != "hardlink-db" && fileHash(t, db) != hdb {
					t.Error("the store was changed")
				}
			})
		}
	}

	t.Run("negative control", func(t *testing.T) {
		s, db := newTestStore(t)
		victim := filepath.Join(filepath.Dir(db), "victim.txt")
		os.WriteFile(victim, []byte("precious data\n"), 0o644)
		os.Remove(db + suffixLock)
		if err := os.Symlink(victim, db+suffixLock); err != nil {
			t.Fatal(err)
		}
		s.lock.FollowLinks = true
		err := holdLong(s, func() bool {
			b, _ := os.ReadFile(victim)
			return strings.HasPrefix(string(b), "pid=")
		})
		// The record went into the victim, and releasing emptied it.
		if b, _ := os.ReadFile(victim); string(b) == "precious data\n" {
			t.Errorf("following the link left the victim alone (err %v): the test proves nothing", err)
		}
	})
}

// TestLockFIFONoHang (T19): an unprivileged reader on a store whose lock file
// is a FIFO returns ErrUnsafePath at once. The negative control: a plain
// read-only open of that FIFO blocks.
func TestLockFIFONoHang(t *testing.T) {
	ctx := context.Background()
	_, db := newTestStore(t)
	os.Remove(db + suffixLock)
	if err := syscall.Mkfifo(db+suffixLock, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, db, WithLockTimeout(time.Minute))
	if err == nil {
		_, err = s.Count(ctx)
	}
	if !errors.Is(err, ErrUnsafePath) {
		t.Errorf("read with a FIFO lock file: %v, want ErrUnsafePath", err)
	}
	if _, err := LockHolders(db); !errors.Is(err, ErrUnsafePath) {
		t.Errorf("LockHolders with a FIFO lock file: %v, want ErrUnsafePath", err)
	}
	opened := make(chan struct{})
	go func() {
		if f, err := os.Open(db + suffixLock); err == nil {
			f.Close()
		}
		close(opened)
	}()
	select {
	case <-opened:
		t.Error("negative control: a plain open of the FIFO did not block; the test proves nothing")
	case <-time.After(200 * time.Millisecond):
		// Blocked, as expected; unblock it.
		if f, err := os.OpenFile(db+suffixLock, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	}
}

// TestLockFileForeignOwner (T18): a lock file owned by a third user (not the
// store's owner, not the caller, not root) is refused.
func TestLockFileForeignOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file away")
	}
	// Root is the caller here; the store belongs to 65534 and the lock file
	// to 12345. Root itself is an accepted owner, so run as 65534.
	dir := worldDir(t)
	db := filepath.Join(dir, "s.db")
	s, err := Create(context.Background(), db, testFields)
	if err != nil {
		t.Fatal(err)
	}
	mustInsert(t, s, Values{"name": "x"})
	for _, p := range []string{db, db + suffixGate} {
		os.Chown(p, 65534, 65534)
	}
	os.Chown(db+suffixLock, 12345, 12345)
	os.Chmod(db+suffixLock, 0o666)
	res := runStoreHelperAs(t, "insert", db, 65534)
	if !strings.Contains(res["insert"], "unsafe store path") {
		t.Errorf("insert with a lock file of uid 12345: %s, want ErrUnsafePath", res["insert"])
	}
	// The owner's own lock file is fine.
	os.Chown(db+suffixLock, 65534, 65534)
	res = runStoreHelperAs(t, "insert", db, 65534)
	if !strings.Contains(res["insert"], "err=<nil>") {
		t.Errorf("insert with the owner's lock file: %s", res["insert"])
	}
}

// TestNoLockFilesForMissingStore (T22): operations that fail because there is
// no store create nothing beside the path.
func TestNoLockFilesForMissingStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := filepath.Join(dir, "missing.db")
	if _, err := Open(ctx, db); !errors.Is(err, ErrNotExist) {
		t.Errorf("Open of a missing store: %v, want ErrNotExist", err)
	}
	if _, err := LockHolders(db); err != nil {
		t.Errorf("LockHolders of a missing store: %v", err)
	}
	d, err := Create(ctx, filepath.Join(dir, "gone.db"), testFields)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, d.Path()) // a second handle, left open
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, 1); !errors.Is(err, ErrNotExist) {
		t.Errorf("Get on a destroyed store: %v, want ErrNotExist", err)
	}
	if _, err := s.Insert(ctx, Values{"name": "x"}); !errors.Is(err, ErrNotExist) {
		t.Errorf("Insert on a destroyed store: %v, want ErrNotExist", err)
	}
	if _, err := s.Check(ctx); !errors.Is(err, ErrNotExist) {
		t.Errorf("Check on a destroyed store: %v, want ErrNotExist", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("files left beside missing stores: %v", names)
	}
}

// TestGateHolderNamed (T21): a writer stopped while it holds the turnstile
// gate blocks everyone after it; the timeout error names it. The negative
// control: the data lock alone names nobody.
func TestGateHolderNamed(t *testing.T) {
	if _, err := os.Stat("/proc/locks"); err != nil {
		t.Skip("needs /proc/locks")
	}
	ctx := context.Background()
	s, db := newTestStore(t)
	mustInsert(t, s, Values{"name": "x"})
	cmd := helperCmd(t, "hold-gate", db)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	in, _ := cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { in.Close(); cmd.Wait() }()
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "holding\n" {
		t.Fatalf("helper: %q", line)
	}
	tctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err = s.Insert(tctx, Values{"name": "y"})
	var lte *LockTimeoutError
	if !errors.As(err, &lte) {
		t.Fatalf("%v, want a LockTimeoutError", err)
	}
	pid := fmt.Sprintf("pid %d", cmd.Process.Pid)
	if !strings.Contains(err.Error(), pid) || !strings.Contains(err.Error(), "gate") {
		t.Errorf("the timeout does not name the gate holder %s: %v", pid, err)
	}
	fi, _ := os.Stat(db + suffixLock)
	if sys, ok := lock.SystemHolders(fi); !ok || len(sys) != 0 {
		t.Errorf("negative control: the data lock alone lists %v", sys)
	}
}

// TestCommitIntoReplacedStore (T20): a tmp cleaner deletes the lock files
// while a Cleanup holds them; a writer then gets a new lock file, opens the
// store and waits for the Cleanup's copy to be renamed over it. Guarded,
// the Cleanup sees its lock is gone and discards its copy, and the write
// lands. With only the writer's check, the write reports ErrUnknownOutcome
// (it went into the replaced file). With neither (the negative control),
// the write is acknowledged and lost.
func TestCommitIntoReplacedStore(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name                 string
		noRename, noCommit   bool
		cleanupErr, writeErr error
		present              bool
	}{
		{"guarded", false, false, ErrUnknownOutcome, nil, true},
		{"writer check only", true, false, nil, ErrUnknownOutcome, false},
		{"negative control", true, true, nil, nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			sB, db := newTestStore(t)
			for i := range 20 {
				mustInsert(t, sB, Values{"name": fmt.Sprint("r", i)})
			}
			sA, err := Open(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			opened := make(chan struct{}, 1)
			sA.cfg.weak.afterOpen = func() { opened <- struct{}{} }
			sA.cfg.weak.noCommitCheck = c.noCommit
			sB.cfg.weak.noRenameCheck = c.noRename
			written := make(chan error, 1)
			var id uint64
			sB.cfg.weak.beforeRename = func() {
				os.Remove(db + suffixLock)
				os.Remove(db + suffixGate)
				// sA arrives now, like another process: it has not seen
				// the old lock file (in one process the registry would
				// make it wait for sB on the old file's identity).
				sA.lock.Forget()
				go func() {
					var err error
					id, err = sA.Insert(ctx, Values{"name": "acknowledged?"})
					written <- err
				}()
				select {
				case <-opened:
				case err := <-written:
					t.Errorf("the write ended before opening the store: %v", err)
					written <- err
				}
			}
			_, cerr := sB.Cleanup(ctx)
			werr := <-written
			if !errors.Is(cerr, c.cleanupErr) || (c.cleanupErr == nil && cerr != nil) {
				t.Errorf("Cleanup: %v, want %v", cerr, c.cleanupErr)
			}
			if !errors.Is(werr, c.writeErr) || (c.writeErr == nil && werr != nil) {
				t.Errorf("write: %v, want %v", werr, c.writeErr)
			}
			_, gerr := sB.Get(ctx, id)
			if present := gerr == nil; present != c.present {
				t.Errorf("record present after: %v (%v), want %v", present, gerr, c.present)
			}
			if c.name == "negative control" && werr == nil && gerr == nil {
				t.Error("negative control: the unguarded write was not lost; the test proves nothing")
			}
		})
	}
}

// TestLockFilesDeletedStorm (T20): processes increment a counter while the
// lock files are deleted over and over and Cleanup runs beside them: no
// acknowledged increment is lost, none is applied twice, and every
// increment that was not acknowledged says so.
func TestLockFilesDeletedStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("process storm")
	}
	ctx := context.Background()
	s, db := newTestStore(t)
	id := mustInsert(t, s, Values{"name": "counter", "n": int64(0)})
	const procs, loops = 6, 60
	var cmds []*exec.Cmd
	var outs []*strings.Builder
	for range procs {
		cmd := helperCmd(t, "incr", db)
		cmd.Env = append(cmd.Env, fmt.Sprintf("PSBASE_INCR=%d", loops))
		var b strings.Builder
		cmd.Stdout, cmd.Stderr = &b, &b
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, &b)
	}
	done := make(chan struct{})
	go func() {
		for _, c := range cmds {
			c.Wait()
		}
		close(done)
	}()
	cleanups := 0
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
			os.Remove(db + suffixLock)
			os.Remove(db + suffixGate)
			if _, err := s.Cleanup(ctx); err == nil {
				cleanups++
			} else if !errors.Is(err, ErrUnknownOutcome) && !errors.Is(err, ErrLockTimeout) {
				t.Errorf("Cleanup: %v", err)
			}
		}
	}
	acked, unknown := 0, 0
	for i, c := range cmds {
		var a, u int
		if _, err := fmt.Sscanf(lastLine(outs[i].String(), "storeresult incr "), "acked=%d unknown=%d", &a, &u); err != nil || !c.ProcessState.Success() {
			t.Fatalf("child %d: %v\n%s", i, err, outs[i].String())
		}
		acked, unknown = acked+a, unknown+u
	}
	rec, err := s.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	n := int(rec.Values["n"].(int64))
	t.Logf("%d acknowledged, %d unknown, counter %d, %d cleanups", acked, unknown, n, cleanups)
	if n < acked || n > acked+unknown {
		t.Errorf("counter %d, want between %d acknowledged and %d (+unknown)", n, acked, acked+unknown)
	}
	if rep, err := s.Check(ctx); err != nil {
		t.Errorf("check: %v %v", err, rep.Problems)
	}
	if cleanups == 0 {
		t.Error("no Cleanup ran during the storm; it tested nothing")
	}
}

// lastLine returns what follows prefix on the last line that has it.
func lastLine(out, prefix string) string {
	var got string
	for line := range strings.Lines(out) {
		if s, ok := strings.CutPrefix(strings.TrimSpace(line), prefix); ok {
			got = s
		}
	}
	return got
}

// helperHoldGate holds the gate file exclusively, as a writer stopped after
// passing the gate would, until stdin closes.
func helperHoldGate(db string) {
	f := flock.New(db+suffixGate, flock.SetFlag(os.O_RDWR))
	if err := f.Lock(); err != nil {
		fmt.Println("error:", err)
		os.Exit(3)
	}
	fmt.Println("holding")
	var b [1]byte
	os.Stdin.Read(b[:])
	os.Exit(0)
}

// helperIncr increments record 1's n PSBASE_INCR times and reports how many
// increments were acknowledged and how many have an unknown outcome.
func helperIncr(db string) {
	ctx := context.Background()
	var loops int
	fmt.Sscan(os.Getenv("PSBASE_INCR"), &loops)
	s, err := Open(ctx, db)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(3)
	}
	acked, unknown := 0, 0
	for range loops {
		err := s.Txn(ctx, func(tx *Tx) error {
			rec, err := tx.Get(1)
			if err != nil {
				return err
			}
			_, err = tx.UpdateByID(1, Values{"n": rec.Values["n"].(int64) + 1})
			return err
		})
		switch {
		case err == nil:
			acked++
		case errors.Is(err, ErrUnknownOutcome):
			unknown++
		case errors.Is(err, ErrLockTimeout):
			// not applied
		default:
			fmt.Println("error:", err)
			os.Exit(3)
		}
	}
	fmt.Printf("storeresult incr acked=%d unknown=%d\n", acked, unknown)
}
