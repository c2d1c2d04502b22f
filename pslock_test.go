package psbase

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofrs/flock"
)

// The tests run real child processes: the test binary re-executes itself
// with PSBASE_LOCK_HELPER set and -test.run=^TestLockHelperProcess$, and
// that test then acts as the child (os/exec style). Children report on
// stdout with lines "lockresult KEY VALUE".

const lockHelperEnv = "PSBASE_LOCK_HELPER"

// lockChild describes one helper process.
type lockChild struct {
	mode  string            // what the child does, see TestLockHelperProcess
	db    string            // the store path
	proto lockProtocol      // the protocol
	args  map[string]string // further PSBASE_LOCK_* parameters
}

func lockCommand(t testing.TB, c lockChild) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(),
		lockHelperEnv+"="+c.mode,
		"PSBASE_LOCK_DB="+c.db,
		"PSBASE_LOCK_PROTO="+strconv.Itoa(int(c.proto)),
		// A -race child would sleep 1 s before exiting (ThreadSanitizer's
		// atexit_sleep_ms); a race it finds still fails it with exit code 66.
		"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"),
	)
	for k, v := range c.args {
		cmd.Env = append(cmd.Env, "PSBASE_LOCK_"+k+"="+v)
	}
	cmd.Stderr = os.Stderr
	return cmd
}

// lockRunningChild is a started helper with its stdin (closing it tells the
// child to stop) and a channel of its result lines.
type lockRunningChild struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	done  chan error
}

func startLockChild(t testing.TB, c lockChild) *lockRunningChild {
	t.Helper()
	cmd := lockCommand(t, c)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	rc := &lockRunningChild{cmd: cmd, stdin: stdin, lines: make(chan string, 100), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if s, ok := strings.CutPrefix(sc.Text(), "lockresult "); ok {
				rc.lines <- s
			}
		}
		close(rc.lines)
		rc.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
	})
	return rc
}

// expect waits for the result line starting with key and returns its value.
func (rc *lockRunningChild) expect(t testing.TB, key string, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case line, ok := <-rc.lines:
			if !ok {
				t.Fatalf("child %d exited before reporting %q", rc.cmd.Process.Pid, key)
			}
			k, v, _ := strings.Cut(line, " ")
			if k == key {
				return v
			}
		case <-deadline:
			t.Fatalf("child %d did not report %q within %v", rc.cmd.Process.Pid, key, timeout)
		}
	}
}

// wait closes stdin and waits for the child to exit.
func (rc *lockRunningChild) wait(t testing.TB) {
	t.Helper()
	_ = rc.stdin.Close()
	for range rc.lines {
	}
	if err := <-rc.done; err != nil {
		t.Fatalf("child %d: %v", rc.cmd.Process.Pid, err)
	}
}

func lockResult(key string, v any) { fmt.Printf("lockresult %s %v\n", key, v) }

func lockEnvInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv("PSBASE_LOCK_" + name)); err == nil {
		return v
	}
	return def
}

func lockEnvDur(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv("PSBASE_LOCK_" + name)); err == nil {
		return v
	}
	return def
}

// TestLockHelperProcess is not a test: it is the body of the child processes.
func TestLockHelperProcess(t *testing.T) {
	mode := os.Getenv(lockHelperEnv)
	if mode == "" {
		t.Skip("helper process for the lock tests")
	}
	if err := lockHelper(mode); err != nil {
		fmt.Fprintf(os.Stderr, "lock helper %s: %v\n", mode, err)
		os.Exit(3)
	}
	os.Exit(0)
}

func lockHelper(mode string) error {
	db := os.Getenv("PSBASE_LOCK_DB")
	cfg := lockConfig{Protocol: lockProtocol(lockEnvInt("PROTO", 0))}
	l, err := newFileLock(db, cfg)
	if err != nil {
		return err
	}
	l.noRecheck = os.Getenv("PSBASE_LOCK_NORECHECK") == "1"
	ctx := context.Background()
	exclusive := os.Getenv("PSBASE_LOCK_SHARED") != "1"
	op := lockOr(os.Getenv("PSBASE_LOCK_OP"), "test")

	switch mode {
	case "counter":
		// n times: lock, read the counter file, increment, write, unlock.
		counter := db + ".counter"
		nolock := os.Getenv("PSBASE_LOCK_NOLOCK") == "1"
		gap := lockEnvDur("GAP", 0)
		for range lockEnvInt("N", 50) {
			release := func() {}
			if !nolock {
				if release, _, err = l.acquire(ctx, true, "increment"); err != nil {
					return err
				}
			}
			b, err := os.ReadFile(counter)
			if err != nil {
				return err
			}
			n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			if gap > 0 {
				time.Sleep(gap)
			}
			if err := os.WriteFile(counter, []byte(strconv.Itoa(n+1)), 0o644); err != nil {
				return err
			}
			release()
		}
		return nil

	case "hold":
		// Lock, report, hold until stdin is closed.
		release, _, err := l.acquire(ctx, exclusive, op)
		if err != nil {
			return err
		}
		lockResult("held", os.Getpid())
		_, _ = io.Copy(io.Discard, os.Stdin)
		release()
		lockResult("released", os.Getpid())
		return nil

	case "loop":
		// Until stdin is closed: lock, hold for HOLD, unlock, GAP; report the count.
		hold, gap := lockEnvDur("HOLD", time.Millisecond), lockEnvDur("GAP", 0)
		var stop atomic.Bool
		go func() { _, _ = io.Copy(io.Discard, os.Stdin); stop.Store(true) }()
		n := 0
		for !stop.Load() {
			release, _, err := l.acquire(ctx, exclusive, op)
			if err != nil {
				return err
			}
			if n == 0 {
				lockResult("ready", os.Getpid())
			}
			time.Sleep(hold)
			release()
			n++
			if gap > 0 {
				time.Sleep(gap)
			}
		}
		lockResult("count", n)
		return nil

	case "destroy":
		// n times: lock exclusively, claim the marker (O_EXCL: fails if another
		// holder has it), every DESTROY-th time remove the lock files, unlock.
		marker := db + ".marker"
		violations := 0
		every := lockEnvInt("DESTROY", 3)
		for i := range lockEnvInt("N", 50) {
			release, _, err := l.acquire(ctx, true, "destroy")
			if err != nil {
				return err
			}
			f, err := os.OpenFile(marker, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if err != nil {
				violations++
			} else {
				_ = f.Close()
			}
			time.Sleep(200 * time.Microsecond)
			if i%every == 0 {
				if err := l.removeFiles(); err != nil {
					return err
				}
			}
			if err == nil {
				_ = os.Remove(marker)
			}
			release()
		}
		lockResult("violations", violations)
		return nil

	case "perm":
		// Run as an unprivileged user: report how acquisitions fail.
		for _, c := range []struct {
			name      string
			exclusive bool
		}{{"shared", false}, {"exclusive", true}} {
			release, _, err := l.acquire(ctx, c.exclusive, "perm")
			if err != nil {
				lockResult(c.name, fmt.Sprintf("err readonly=%v permission=%v %v",
					errors.Is(err, ErrReadOnly), errors.Is(err, fs.ErrPermission), strings.ReplaceAll(err.Error(), "\n", " ")))
				continue
			}
			release()
			lockResult(c.name, "ok")
		}
		return nil
	}
	return fmt.Errorf("unknown mode %q", mode)
}

func lockOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func newTestFileLock(t testing.TB, db string, proto lockProtocol) *fileLock {
	t.Helper()
	l, err := newFileLock(db, lockConfig{Protocol: proto})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// 1. Exclusion between processes, with the unlocked negative control.
func TestLockExclusionProcesses(t *testing.T) {
	const procs, n = 20, 50
	run := func(t *testing.T, nolock bool) int {
		db := filepath.Join(t.TempDir(), "x.db")
		if err := os.WriteFile(db+".counter", []byte("0"), 0o644); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, procs)
		for range procs {
			cmd := lockCommand(t, lockChild{mode: "counter", db: db, args: map[string]string{
				"N": strconv.Itoa(n), "GAP": "100us", "NOLOCK": map[bool]string{true: "1"}[nolock]}})
			cmd.Stderr = nil
			wg.Go(func() {
				if out, err := cmd.CombinedOutput(); err != nil {
					errs <- fmt.Errorf("%v: %s", err, out)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		b, err := os.ReadFile(db + ".counter")
		if err != nil {
			t.Fatal(err)
		}
		total, _ := strconv.Atoi(string(b))
		return total
	}
	start := time.Now()
	if got := run(t, false); got != procs*n {
		t.Fatalf("with the lock: counter = %d, want %d", got, procs*n)
	}
	t.Logf("locked: %d increments by %d processes in %v", procs*n, procs, time.Since(start))
	// Negative control: the same without the lock must lose updates, or this
	// test could not tell a working lock from no lock.
	if got := run(t, true); got >= procs*n {
		t.Fatalf("without the lock: counter = %d, want lost updates (< %d)", got, procs*n)
	} else {
		t.Logf("negative control without the lock: counter = %d of %d", got, procs*n)
	}
}

// 2. kill -9 of the holder releases the lock: the kernel drops it.
func TestLockKillHolder(t *testing.T) {
	db := filepath.Join(t.TempDir(), "k.db")
	child := startLockChild(t, lockChild{mode: "hold", db: db})
	child.expect(t, "held", 10*time.Second)
	l := newTestFileLock(t, db, protoDefault)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, _, err := l.acquire(ctx, true, "insert")
	cancel()
	if !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("acquire while held: %v, want ErrLockTimeout", err)
	}
	if err := child.cmd.Process.Kill(); err != nil { // SIGKILL: no cleanup in the child
		t.Fatal(err)
	}
	start := time.Now()
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	release, _, err := l.acquire(ctx, true, "insert")
	if err != nil {
		t.Fatalf("acquire after kill -9: %v", err)
	}
	release()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("acquire after kill -9 took %v", d)
	}
	// The killed holder's record is stale: LockHolders must not report it.
	if hs, err := LockHolders(db); err != nil || len(hs) != 0 {
		t.Fatalf("LockHolders after release = %v, %v; want none", hs, err)
	}
}

// 3. FIFO-ish fairness between processes.
func TestLockFairness(t *testing.T) {
	const procs = 6
	db := filepath.Join(t.TempDir(), "f.db")
	var children []*lockRunningChild
	for range procs {
		children = append(children, startLockChild(t, lockChild{mode: "loop", db: db,
			args: map[string]string{"HOLD": "1ms"}}))
	}
	for _, c := range children {
		c.expect(t, "ready", 10*time.Second)
	}
	time.Sleep(1500 * time.Millisecond)
	var counts []int
	for _, c := range children {
		_ = c.stdin.Close()
	}
	for _, c := range children {
		n, _ := strconv.Atoi(c.expect(t, "count", 10*time.Second))
		counts = append(counts, n)
		c.wait(t)
	}
	lo, hi := slices.Min(counts), slices.Max(counts)
	t.Logf("acquisitions per process in ~1.5 s: %v", counts)
	if lo == 0 || hi > 4*lo {
		t.Fatalf("unfair: min %d, max %d acquisitions (%v)", lo, hi, counts)
	}
}

// 4. A writer is not starved by a stream of readers. This is also the
// measurement behind defaultProtocol; plain flock is the negative control.
func TestLockWriterStarvation(t *testing.T) {
	if testing.Short() {
		t.Skip("measures for seconds")
	}
	const readers, samples = 8, 5
	const limit = time.Second
	measure := func(t *testing.T, proto lockProtocol) (waits []time.Duration, timeouts int, readsPerSec float64) {
		db := filepath.Join(t.TempDir(), "s.db")
		var children []*lockRunningChild
		for range readers {
			children = append(children, startLockChild(t, lockChild{mode: "loop", db: db, proto: proto,
				args: map[string]string{"SHARED": "1", "HOLD": "3ms"}}))
		}
		for _, c := range children {
			c.expect(t, "ready", 10*time.Second)
		}
		start := time.Now()
		l := newTestFileLock(t, db, proto)
		for range samples {
			time.Sleep(20 * time.Millisecond)
			ctx, cancel := context.WithTimeout(context.Background(), limit)
			release, waited, err := l.acquire(ctx, true, "write")
			cancel()
			if err != nil {
				if !errors.Is(err, ErrLockTimeout) {
					t.Fatal(err)
				}
				timeouts++
				waits = append(waits, limit)
				continue
			}
			time.Sleep(time.Millisecond)
			release()
			waits = append(waits, waited)
		}
		for _, c := range children {
			_ = c.stdin.Close()
		}
		elapsed := time.Since(start)
		total := 0
		for _, c := range children {
			n, _ := strconv.Atoi(c.expect(t, "count", 10*time.Second))
			total += n
			c.wait(t)
		}
		slices.Sort(waits)
		return waits, timeouts, float64(total) / elapsed.Seconds()
	}
	type result struct {
		waits    []time.Duration
		timeouts int
		rps      float64
	}
	results := map[lockProtocol]result{}
	for _, p := range []lockProtocol{protoDefault, protoExclusiveOnly, protoPlain} {
		w, to, rps := measure(t, p)
		results[p] = result{w, to, rps}
		t.Logf("%-26s writer wait median %8v max %8v (timeouts at %v: %d/%d); readers ~%.0f acquisitions/s",
			p, w[len(w)/2].Round(10*time.Microsecond), w[len(w)-1].Round(10*time.Microsecond), limit, to, samples, rps)
	}
	def, plain, exo := results[protoDefault], results[protoPlain], results[protoExclusiveOnly]
	if max := def.waits[len(def.waits)-1]; max > 250*time.Millisecond || def.timeouts > 0 {
		t.Errorf("default protocol: writer waited up to %v", max)
	}
	if max := exo.waits[len(exo.waits)-1]; max > 500*time.Millisecond || exo.timeouts > 0 {
		t.Errorf("exclusive-only protocol: writer waited up to %v", max)
	}
	// Negative control: plain flock starves the writer (Linux grants new
	// LOCK_SH while a LOCK_EX waits). If this ever fails, the test no
	// longer exercises starvation and proves nothing about the default.
	if runtime.GOOS == "linux" {
		pm, dm := plain.waits[len(plain.waits)/2], def.waits[len(def.waits)/2]
		if pm < 10*dm || pm < 200*time.Millisecond {
			t.Errorf("negative control: plain flock writer median wait %v is not clearly worse than default %v", pm, dm)
		}
	}
}

// 5. Timeout and cancellation return promptly, name the holder, leak
// nothing, and keep at most one kernel waiter per process.
func TestLockTimeoutCancel(t *testing.T) {
	db := filepath.Join(t.TempDir(), "t.db")
	child := startLockChild(t, lockChild{mode: "hold", db: db, args: map[string]string{"OP": "insert"}})
	pid, _ := strconv.Atoi(child.expect(t, "held", 10*time.Second))
	before := runtime.NumGoroutine()
	for _, proto := range []lockProtocol{protoDefault, protoPlain, protoExclusiveOnly} {
		l := newTestFileLock(t, db, proto)
		for _, exclusive := range []bool{true, false} {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			start := time.Now()
			_, _, err := l.acquire(ctx, exclusive, "select")
			d := time.Since(start)
			cancel()
			if d < 100*time.Millisecond || d > 250*time.Millisecond {
				t.Errorf("%v exclusive=%v: acquire with a 100 ms deadline returned after %v", proto, exclusive, d)
			}
			if !errors.Is(err, ErrLockTimeout) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("%v: err = %v, want ErrLockTimeout and DeadlineExceeded", proto, err)
			}
			var lte *LockTimeoutError
			if !errors.As(err, &lte) || lte.Op != "select" || lte.Exclusive != exclusive || lte.Waited < 100*time.Millisecond {
				t.Fatalf("%v: err = %#v", proto, err)
			}
			if runtime.GOOS == "linux" {
				found := false
				for _, h := range lte.Holders {
					if h.PID == pid && !h.Waiting && h.Exclusive && h.Op == "insert" && !h.Since.IsZero() {
						found = true
					}
				}
				if !found || !strings.Contains(err.Error(), "pid "+strconv.Itoa(pid)) {
					t.Fatalf("%v: timeout error does not name holder pid %d: %v (%+v)", proto, pid, err, lte.Holders)
				}
			}
		}
	}
	t.Logf("timeout error: %v", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		_, _, err := newTestFileLock(t, db, protoDefault).acquire(ctx, true, "insert")
		return err
	}())

	// A cancelled context.
	l := newTestFileLock(t, db, protoDefault)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, _, err := l.acquire(ctx, false, "select")
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("cancelled acquire returned after %v", d)
	}
	if !errors.Is(err, ErrLockTimeout) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: err = %v", err)
	}
	// An already cancelled context fails without waiting.
	if _, _, err := l.acquire(ctx, true, "insert"); !errors.Is(err, context.Canceled) {
		t.Fatalf("done ctx: err = %v", err)
	}

	// Many goroutines waiting: at most one of them waits in the kernel.
	if runtime.GOOS == "linux" {
		var wg sync.WaitGroup
		for i := range 10 {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
				defer cancel()
				_, _, _ = newTestFileLock(t, db, protoDefault).acquire(ctx, i%2 == 0, "wait")
			})
		}
		time.Sleep(200 * time.Millisecond)
		hs, err := LockHolders(db)
		if err != nil {
			t.Fatal(err)
		}
		waiters := 0
		for _, h := range hs {
			if h.Waiting && h.PID == os.Getpid() {
				waiters++
			}
		}
		wg.Wait()
		t.Logf("holders while 10 goroutines wait: %v", hs)
		if waiters > 1 {
			t.Fatalf("%d kernel waiters from this process, want at most 1", waiters)
		}
	}

	// The holder lets go: the abandoned kernel waits must not keep the lock.
	child.wait(t)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel2()
	start = time.Now()
	release, _, err := l.acquire(ctx2, true, "insert")
	if err != nil {
		t.Fatalf("acquire after the holder left: %v", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("acquire after the holder left took %v", d)
	}
	release()
	release() // a second call is a no-op
	// No helper goroutine and no registry entry is left behind. The last
	// abandoned kernel wait ends on its own once it gets (and drops) the
	// lock, so wait for both to settle; other goroutines of the test (the
	// child's I/O copiers) may end meanwhile, so the count alone is not
	// enough.
	registry := func() int {
		procLocks.mu.Lock()
		defer procLocks.mu.Unlock()
		return len(procLocks.m)
	}
	deadline := time.Now().Add(3 * time.Second)
	for (runtime.NumGoroutine() > before || registry() != 0) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("goroutines: %d before, %d after", before, n)
	}
	if left := registry(); left != 0 {
		t.Errorf("registry holds %d entries after all releases", left)
	}
}

// 6. Goroutines: one fileLock shared by goroutines and two fileLocks on one
// path exclude each other (the race detector checks the plain counter).
// Negative control: one *flock.Flock shared by goroutines does not.
func TestLockGoroutines(t *testing.T) {
	db := filepath.Join(t.TempDir(), "g.db")
	for _, proto := range []lockProtocol{protoDefault, protoExclusiveOnly, protoPlain} {
		l1, l2 := newTestFileLock(t, db, proto), newTestFileLock(t, db, proto)
		counter, inside := 0, 0 // guarded by the lock only
		var wg sync.WaitGroup
		for g := range 6 {
			l := l1
			if g%2 == 1 {
				l = l2
			}
			wg.Go(func() {
				for i := range 100 {
					if g >= 4 && i%2 == 0 { // readers: see a consistent counter
						release, _, err := l.acquire(context.Background(), false, "read")
						if err != nil {
							t.Error(err)
							return
						}
						if inside != 0 {
							t.Error("reader saw a writer inside")
						}
						_ = counter
						release()
						continue
					}
					release, _, err := l.acquire(context.Background(), true, "write")
					if err != nil {
						t.Error(err)
						return
					}
					inside++
					if inside != 1 {
						t.Error("two writers inside")
					}
					c := counter
					runtime.Gosched()
					counter = c + 1
					inside--
					release()
				}
			})
		}
		wg.Wait()
		if want := 4*100 + 2*50; counter != want {
			t.Fatalf("%v: counter = %d, want %d", proto, counter, want)
		}
	}

	// Negative control (gofrs/flock issue 58): one *flock.Flock, two
	// goroutines: the second Lock returns at once while the first holds it.
	f := flock.New(filepath.Join(t.TempDir(), "shared.lock"))
	if err := f.Lock(); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { got <- f.Lock() }()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("negative control: a second goroutine 'got' a shared *flock.Flock held by the first")
	case <-time.After(time.Second):
		t.Fatal("negative control: one *flock.Flock excluded two goroutines; the test premise is wrong")
	}
	// ... and one Unlock frees both: another descriptor can lock it now.
	_ = f.Unlock()
	other := flock.New(f.Path())
	if ok, err := other.TryLock(); err != nil || !ok {
		t.Fatalf("after one Unlock the file should be free: %v %v", ok, err)
	}
	_ = other.Unlock()
}

// 7. Destroy race: removeFiles while others wait never lets two holders in.
func TestLockDestroyRace(t *testing.T) {
	run := func(t *testing.T, norecheck bool) int {
		db := filepath.Join(t.TempDir(), "d.db")
		var children []*lockRunningChild
		for range 4 {
			children = append(children, startLockChild(t, lockChild{mode: "destroy", db: db,
				args: map[string]string{"N": "80", "DESTROY": "2", "NORECHECK": map[bool]string{true: "1"}[norecheck]}}))
		}
		total := 0
		for _, c := range children {
			n, _ := strconv.Atoi(c.expect(t, "violations", 30*time.Second))
			total += n
			c.wait(t)
		}
		return total
	}
	if v := run(t, false); v != 0 {
		t.Fatalf("%d times two exclusive holders coexisted across remove/recreate", v)
	}
	// Negative control: without the fstat/stat re-check, a waiter blocked on
	// the removed file and a newcomer on the new file both hold "the" lock.
	v := run(t, true)
	t.Logf("negative control without the re-check: %d violations", v)
	if v == 0 {
		t.Fatal("negative control: no violation without the re-check; the test no longer exercises the delete race")
	}
}

// LockHolders on a live holder and a waiter, with the record merged in.
func TestLockHoldersLive(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc/locks")
	}
	db := filepath.Join(t.TempDir(), "h.db")
	holder := startLockChild(t, lockChild{mode: "hold", db: db, args: map[string]string{"OP": "compact"}})
	hpid, _ := strconv.Atoi(holder.expect(t, "held", 10*time.Second))
	waiter := startLockChild(t, lockChild{mode: "hold", db: db, args: map[string]string{"OP": "insert"}})
	var hs []LockHolder
	for range 200 { // until the waiter is queued in the kernel
		var err error
		if hs, err = LockHolders(db); err != nil {
			t.Fatal(err)
		}
		// Until the waiter is queued and the holder's record (written once
		// the hold passes lockRecordDelay) is merged in.
		if len(hs) == 2 && slices.ContainsFunc(hs, func(h LockHolder) bool { return h.Waiting }) &&
			slices.ContainsFunc(hs, func(h LockHolder) bool { return !h.Waiting && h.Op != "" }) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("holders: %v", hs)
	if len(hs) != 2 {
		t.Fatalf("LockHolders = %v, want the holder and the waiter", hs)
	}
	h := hs[slices.IndexFunc(hs, func(h LockHolder) bool { return !h.Waiting })]
	host, _ := os.Hostname()
	if h.PID != hpid || !h.Exclusive || h.Op != "compact" || h.Host != host ||
		time.Since(h.Since) > time.Minute || !strings.Contains(h.Command, filepath.Base(os.Args[0])) {
		t.Fatalf("holder = %+v", h)
	}
	w := hs[slices.IndexFunc(hs, func(h LockHolder) bool { return h.Waiting })]
	if w.PID != waiter.cmd.Process.Pid || !w.Exclusive {
		t.Fatalf("waiter = %+v", w)
	}
	b, _ := os.ReadFile(db + ".lock")
	t.Logf("lock file while held: %q", b)
	holder.wait(t)
	waiter.expect(t, "held", 10*time.Second)
	waiter.wait(t)
	if b, _ := os.ReadFile(db + ".lock"); len(b) != 0 {
		t.Fatalf("lock file not emptied on release: %q", b)
	}
}

// 8b. newFileLock: no file created, missing directory, unsupported FS table.
func TestLockNewFileLock(t *testing.T) {
	dir := t.TempDir()
	l, err := newFileLock(filepath.Join(dir, "n.db"), lockConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("newFileLock created files: %v", ents)
	}
	if l.proto != defaultProtocol || l.mode != 0o644 {
		t.Fatalf("defaults: %v %v", l.proto, l.mode)
	}
	_, err = newFileLock(filepath.Join(dir, "nope", "n.db"), lockConfig{})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing directory: %v, want fs.ErrNotExist", err)
	}
	// The configured mode is applied in spite of the umask.
	l, err = newFileLock(filepath.Join(dir, "m.db"), lockConfig{FileMode: 0o664})
	if err != nil {
		t.Fatal(err)
	}
	release, _, err := l.acquire(context.Background(), true, "create")
	if err != nil {
		t.Fatal(err)
	}
	release()
	for _, p := range []string{l.path, l.gatePath} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o664 {
			t.Fatalf("%s: %v %v, want mode 0664", p, fi.Mode(), err)
		}
	}
	if err := l.removeFiles(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("removeFiles left %v", ents)
	}
}

func TestLockUnsupportedFSTable(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("statfs magic numbers are Linux")
	}
	for _, c := range []struct {
		magic uint32
		want  string
	}{
		{0x6969, "nfs"}, {0xff534d42, "cifs"}, {0xfe534d42, "smb2"}, {0x517b, "smb"},
		{0x65735546, "fuse (incl. virtiofs)"}, {0x01021997, "9p"}, {0x00c36400, "ceph"},
		{0xef53, ""}, {0x01021994, ""}, {0x58465342, ""}, {0x9123683e, ""}, {0x794c7630, ""}, // ext4, tmpfs, xfs, btrfs, overlayfs
	} {
		if got := lockFSName(c.magic); got != c.want {
			t.Errorf("fsName(%#x) = %q, want %q", c.magic, got, c.want)
		}
	}
	// The test's own temp dir must be accepted.
	if name, bad := lockCheckFS(t.TempDir()); bad {
		t.Skipf("temp dir is on %s", name)
	}
}

// 8c. /proc/locks parsing and the holder record, as pure functions.
func TestLockParseProcLocks(t *testing.T) {
	const text = `1: FLOCK  ADVISORY  WRITE 1234 08:01:131090 0 EOF
1: -> FLOCK  ADVISORY  WRITE 1235 08:01:131090 0 EOF
1: -> FLOCK  ADVISORY  READ  1236 08:01:131090 0 EOF
2: FLOCK  ADVISORY  READ  2000 08:01:131091 0 EOF
3: POSIX  ADVISORY  WRITE 3000 08:01:131090 0 EOF
4: OFDLCK ADVISORY  READ  -1 08:01:131090 0 EOF
5: FLOCK  ADVISORY  READ  4000 fd:01:131090 0 EOF
6: FLOCK  ADVISORY  READ  5000 103:02:77 0 EOF
7: FLOCK  ADVISORY  READ  5001 103:02:77 0 EOF
8: LEASE  ACTIVE    READ  6000 08:01:131090 0 EOF
9: FLOCK  ADVISORY  WRITE -1 00:2a:99 0 EOF
garbage
`
	for _, c := range []struct {
		major, minor uint32
		ino          uint64
		want         []LockHolder
	}{
		{8, 1, 131090, []LockHolder{{PID: 1234, Exclusive: true}, {PID: 1235, Exclusive: true, Waiting: true}, {PID: 1236, Waiting: true}}},
		{8, 1, 131091, []LockHolder{{PID: 2000}}},
		{0xfd, 1, 131090, []LockHolder{{PID: 4000}}},
		{0x103, 2, 77, []LockHolder{{PID: 5000}, {PID: 5001}}},
		{0, 0x2a, 99, []LockHolder{{PID: 0, Exclusive: true}}},
		{8, 1, 1, nil},
	} {
		got := parseProcLocks([]byte(text), c.major, c.minor, c.ino)
		if !slices.Equal(got, c.want) {
			t.Errorf("parseProcLocks(%x:%x:%d) = %+v, want %+v", c.major, c.minor, c.ino, got, c.want)
		}
	}

	since := time.Date(2025, 11, 22, 4, 41, 0, 123456789, time.UTC)
	rec := formatLockRecord(LockHolder{PID: 42, Host: "my host", Op: "insert", Since: since})
	if string(rec) != "pid=42 host=my_host op=insert since=2025-11-22T04:41:00.123456789Z\n" {
		t.Fatalf("record = %q", rec)
	}
	h, ok := parseLockRecord(append([]byte("\x00"), rec...))
	if !ok || h != (LockHolder{PID: 42, Host: "my_host", Op: "insert", Since: since, Exclusive: true}) {
		t.Fatalf("parseRecord = %+v %v", h, ok)
	}
	for _, bad := range []string{"", "\x00\x00", "hello world", "pid=x", "pid=0 op=a"} {
		if _, ok := parseLockRecord([]byte(bad)); ok {
			t.Errorf("parseRecord(%q) ok", bad)
		}
	}
	// Merge: the record fills in the exclusive holder; a stale one is dropped.
	sys := []LockHolder{{PID: 42, Exclusive: true}, {PID: 43, Waiting: true}}
	got := mergeLockRecord(slices.Clone(sys), h, true)
	if got[0].Op != "insert" || got[0].Host != "my_host" || got[1].Op != "" {
		t.Fatalf("merge = %+v", got)
	}
	stale := h
	stale.PID = 7
	if got := mergeLockRecord(slices.Clone(sys), stale, true); got[0].Op != "" {
		t.Fatalf("stale record merged: %+v", got)
	}
	if got := mergeLockRecord([]LockHolder{{PID: 0, Exclusive: true}}, h, true); got[0].PID != 42 {
		t.Fatalf("record pid not used for an unknown pid: %+v", got)
	}
}

// The in-process lock: FIFO, writers not starved, cancellation unblocks
// those queued behind a cancelled writer.
func TestLockProcLock(t *testing.T) {
	p := &procLock{token: make(chan struct{}, 1)}
	ctx := context.Background()
	if err := p.lock(ctx, false); err != nil {
		t.Fatal(err)
	}
	// A writer queues behind the reader; a later reader queues behind it.
	wctx, wcancel := context.WithCancel(ctx)
	werr := make(chan error, 1)
	go func() { werr <- p.lock(wctx, true) }()
	for {
		p.mu.Lock()
		n := len(p.queue)
		p.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	rerr := make(chan error, 1)
	go func() { rerr <- p.lock(ctx, false) }()
	select {
	case <-rerr:
		t.Fatal("a reader passed a queued writer")
	case <-time.After(50 * time.Millisecond):
	}
	// Cancelling the writer lets the reader in.
	wcancel()
	if err := <-werr; !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if err := <-rerr; err != nil {
		t.Fatal(err)
	}
	p.unlock(false)
	p.unlock(false)
	if p.readers != 0 || p.writer || len(p.queue) != 0 {
		t.Fatalf("state %+v", p)
	}
	// Order of grants is FIFO.
	if err := p.lock(ctx, true); err != nil {
		t.Fatal(err)
	}
	var order []int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() {
			_ = p.lock(ctx, true)
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			p.unlock(true)
		})
		for { // queue them in order
			p.mu.Lock()
			n := len(p.queue)
			p.mu.Unlock()
			if n == i+1 {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	p.unlock(true)
	wg.Wait()
	if !sort.IntsAreSorted(order) {
		t.Fatalf("grant order %v, want FIFO", order)
	}
}

// The uncontended cost of acquire+release, per protocol and mode.
func BenchmarkLockAcquire(b *testing.B) {
	for _, proto := range []lockProtocol{protoTurnstile, protoExclusiveOnly, protoPlain} {
		for _, exclusive := range []bool{false, true} {
			b.Run(fmt.Sprintf("%v/exclusive=%v", proto, exclusive), func(b *testing.B) {
				l := newTestFileLock(b, filepath.Join(b.TempDir(), "b.db"), proto)
				for b.Loop() {
					release, _, err := l.acquire(context.Background(), exclusive, "bench")
					if err != nil {
						b.Fatal(err)
					}
					release()
				}
			})
		}
	}
}
