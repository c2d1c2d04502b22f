package etcdkv

// main_test.go: the test binary's roles — a cluster member (etcdtest), a
// worker process (below), or the tests — and the cluster the tests share.
//
// May touch: the shared cluster, the worker processes the tests start.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/psbase/psbase/etcd/etcdtest"
	"github.com/psbase/psbase/internal/kv"
)

const envWorker = "PSBASE_ETCDKV_WORKER"

var (
	sharedOnce    sync.Once
	sharedCluster *etcdtest.Cluster
	sharedErr     error
)

func TestMain(m *testing.M) {
	etcdtest.Main()
	if js := os.Getenv(envWorker); js != "" {
		os.Exit(runWorker(js))
	}
	code := m.Run()
	if sharedCluster != nil {
		sharedCluster.Close()
	}
	os.Exit(code)
}

// cluster returns the cluster the tests share (started on first use; each
// test uses a store name of its own on it). Tests that fault members start
// their own.
func cluster(t testing.TB) *etcdtest.Cluster {
	t.Helper()
	sharedOnce.Do(func() { sharedCluster, sharedErr = startShared() })
	if sharedErr != nil {
		t.Fatalf("etcdtest: %v", sharedErr)
	}
	return sharedCluster
}

// storeName is a store name unique to the test.
func storeName(t testing.TB) string {
	return strings.NewReplacer("/", "-", " ", "_").Replace(t.Name()) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
}

// open opens a backend on endpoints and closes it when t ends.
func open(t testing.TB, endpoints []string, name string, tweak func(*Config)) *Backend {
	t.Helper()
	cfg := Config{Endpoints: endpoints, Name: name, SessionTTL: 2 * time.Second}
	if tweak != nil {
		tweak(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// workerSpec tells a worker process what to do.
type workerSpec struct {
	Mode      string // "hold", "incr"
	Endpoints []string
	Name      string
	TTL       time.Duration
	NoFence   bool
	NoLock    bool
	N         int
}

var (
	counterBucket = []byte("c")
	counterKey    = []byte("n")
)

// readCounter returns the counter in t (0 if none).
func readCounter(t kv.Tx) int {
	b := t.Bucket(counterBucket)
	if b == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(b.Get(counterKey)))
	return n
}

// writeCounter sets the counter in a writable t.
func writeCounter(t kv.Tx, n int) error {
	b := t.Bucket(counterBucket)
	if b == nil {
		var err error
		if b, err = t.CreateBucket(counterBucket); err != nil {
			return err
		}
	}
	return b.Put(counterKey, []byte(strconv.Itoa(n)))
}

// runWorker is a worker process: it speaks in lines on stdout.
func runWorker(js string) int {
	var sp workerSpec
	if err := json.Unmarshal([]byte(js), &sp); err != nil {
		fmt.Println("ERROR", err)
		return 2
	}
	cfg := Config{Endpoints: sp.Endpoints, Name: sp.Name, SessionTTL: sp.TTL}
	cfg.weak.noFence, cfg.weak.noLock = sp.NoFence, sp.NoLock
	ctx := context.Background()
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	b, err := Open(octx, cfg)
	cancel()
	if err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	defer b.Close()
	in := bufio.NewScanner(os.Stdin)
	switch sp.Mode {
	case "hold":
		// Take the lock, read, say so, wait for "commit", write n+1.
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		tx, err := b.Begin(lctx, true, "hold")
		if err != nil {
			fmt.Println("ERROR", err)
			return 1
		}
		n := readCounter(tx)
		fmt.Println("HOLDING", n)
		if !in.Scan() || in.Text() != "commit" {
			fmt.Println("ERROR no commit line")
			return 1
		}
		if err := writeCounter(tx, n+1); err != nil {
			fmt.Println("ERROR", err)
			return 1
		}
		switch err := tx.Commit(); {
		case err == nil:
			fmt.Println("COMMITTED")
		case errors.Is(err, ErrLockLost):
			fmt.Println("REFUSED", strings.ReplaceAll(err.Error(), "\n", " "))
		default:
			fmt.Println("ERROR", err)
		}
	case "incr":
		// N increments, each its own transaction; every outcome reported.
		for i := range sp.N {
			ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := b.Update(ictx, "incr", func(tx kv.Tx) error { return writeCounter(tx, readCounter(tx)+1) })
			cancel()
			switch {
			case err == nil:
				fmt.Println("ACK", i)
			case isUnknown(err):
				fmt.Println("UNKNOWN", i)
			default:
				fmt.Println("FAIL", i, strings.ReplaceAll(err.Error(), "\n", " "))
			}
		}
		fmt.Println("END")
	default:
		fmt.Println("ERROR unknown mode", sp.Mode)
		return 2
	}
	return 0
}

// worker is a running worker process.
type worker struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

// startWorker starts a worker process; it is killed when t ends.
func startWorker(t testing.TB, sp workerSpec) *worker {
	t.Helper()
	js, _ := json.Marshal(sp)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), envWorker+"="+string(js))
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &worker{cmd: cmd, stdin: stdin, lines: make(chan string, 1024)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
		close(w.lines)
	}()
	t.Cleanup(func() {
		_ = etcdtest.Resume(cmd.Process)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return w
}

// expect waits for the worker's next line and checks its first word.
func (w *worker) expect(t testing.TB, d time.Duration, word string) string {
	t.Helper()
	select {
	case line, ok := <-w.lines:
		if !ok {
			t.Fatalf("worker %d exited; want %s", w.cmd.Process.Pid, word)
		}
		if !strings.HasPrefix(line, word) {
			t.Fatalf("worker %d said %q; want %s", w.cmd.Process.Pid, line, word)
		}
		return line
	case <-time.After(d):
		t.Fatalf("worker %d said nothing for %v; want %s", w.cmd.Process.Pid, d, word)
	}
	return ""
}

// outcomes counts an incr worker's lines until END.
func (w *worker) outcomes(t testing.TB, d time.Duration) (ack, unknown, failed int) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case line, ok := <-w.lines:
			if !ok {
				t.Fatalf("worker %d exited before END", w.cmd.Process.Pid)
			}
			switch word, _, _ := strings.Cut(line, " "); word {
			case "ACK":
				ack++
			case "UNKNOWN":
				unknown++
			case "FAIL":
				failed++
				t.Logf("worker %d: %s", w.cmd.Process.Pid, line)
			case "END":
				return
			default:
				t.Fatalf("worker %d said %q", w.cmd.Process.Pid, line)
			}
		case <-deadline:
			t.Fatalf("worker %d not done within %v", w.cmd.Process.Pid, d)
		}
	}
}

// counter reads the store's counter.
func counter(t testing.TB, b *Backend) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := 0
	if err := b.View(ctx, func(tx kv.Tx) error { n = readCounter(tx); return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// startShared starts the shared cluster.
func startShared() (*etcdtest.Cluster, error) { return etcdtest.StartCluster(etcdtest.Options{}) }
