package etcd

// roles_test.go: the worker processes of this package's tests (the test
// binary re-executed with PSBASE_ETCD_ROLE set), the cluster the feed and
// index tests share, and the "etcdweak" scheme: the etcd backend with one of
// etcdkv's negative-control knobs switched on, for this test process only.
//
// May touch: the stores the tests name on the test clusters; the worker
// processes the tests start.

import (
	"bufio"
	"context"
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

	"github.com/psbase/psbase"
	"github.com/psbase/psbase/etcd/etcdtest"
	"github.com/psbase/psbase/etcd/internal/etcdkv"
	"github.com/psbase/psbase/internal/backend"
)

const (
	envRole  = "PSBASE_ETCD_ROLE"  // "insert" or "build"
	envURL   = "PSBASE_ETCD_URL"   // the store
	envN     = "PSBASE_ETCD_N"     // inserts to make
	envField = "PSBASE_ETCD_FIELD" // the field to index
	envBlock = "PSBASE_ETCD_BLOCK" // "1": the builder stops at its first progress call until killed
)

// runRole is a worker process; it speaks in lines on stdout.
func runRole(role string) int {
	ctx := context.Background()
	s, err := psbase.Open(ctx, os.Getenv(envURL), psbase.WithLockTimeout(60*time.Second))
	if err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	defer s.Close()
	switch role {
	case "insert":
		// N inserts, each its own commit; an unknown outcome (a member
		// killed under the commit) is reported, not retried.
		n, _ := strconv.Atoi(os.Getenv(envN))
		for i := range n {
			_, err := s.Insert(ctx, psbase.Values{"name": fmt.Sprintf("%d-%d", os.Getpid(), i), "n": i})
			switch {
			case err == nil:
			case errors.Is(err, psbase.ErrUnknownOutcome):
				fmt.Println("UNKNOWN", i)
			default:
				fmt.Println("FAIL", i, strings.ReplaceAll(err.Error(), "\n", " "))
			}
		}
		fmt.Println("END")
	case "build":
		block := os.Getenv(envBlock) == "1"
		err := s.CreateIndex(ctx, os.Getenv(envField), psbase.Unique(), psbase.IndexProgress(func(done, total int) {
			fmt.Println("PROGRESS", done, total)
			if block && done < total {
				_, _ = io.Copy(io.Discard, os.Stdin) // until the test kills this process
			}
		}))
		if err != nil {
			fmt.Println("ERROR", strings.ReplaceAll(err.Error(), "\n", " "))
			return 1
		}
		fmt.Println("DONE")
	default:
		fmt.Println("ERROR unknown role", role)
		return 2
	}
	return 0
}

// proc is a running worker process.
type proc struct {
	cmd   *exec.Cmd
	lines chan string
}

// spawn starts a worker process with role on url; it is killed when t ends.
func spawn(t testing.TB, role, url string, env ...string) *proc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(append(os.Environ(), envRole+"="+role, envURL+"="+url), env...)
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe() // held open: a blocked builder waits on it
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, lines: make(chan string, 1024)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = stdin.Close()
	})
	return p
}

// line returns the process's next line ("" once it exited).
func (p *proc) line(t testing.TB, d time.Duration) string {
	t.Helper()
	select {
	case l := <-p.lines:
		return l
	case <-time.After(d):
		t.Fatalf("worker %d said nothing for %v", p.cmd.Process.Pid, d)
	}
	return ""
}

// finish waits for an insert worker's END and its exit, logging the
// outcomes it reported.
func (p *proc) finish(t testing.TB, d time.Duration) {
	t.Helper()
	for {
		l := p.line(t, d)
		switch {
		case l == "":
			t.Fatalf("worker %d exited before END", p.cmd.Process.Pid)
		case l == "END":
			if err := p.cmd.Wait(); err != nil {
				t.Fatalf("worker %d: %v", p.cmd.Process.Pid, err)
			}
			return
		default:
			t.Logf("worker %d: %s", p.cmd.Process.Pid, l)
		}
	}
}

var (
	sharedOnce sync.Once
	sharedCl   *etcdtest.Cluster
	sharedErr  error
)

// sharedCluster is the cluster the feed and index tests share (each on a
// store of its own); tests that fault members start their own.
func sharedCluster(t testing.TB) *etcdtest.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a 3-member etcd cluster")
	}
	sharedOnce.Do(func() { sharedCl, sharedErr = etcdtest.StartCluster(etcdtest.Options{}) })
	if sharedErr != nil {
		t.Fatalf("etcdtest: %v", sharedErr)
	}
	return sharedCl
}

// closeShared stops the shared cluster, if it was started.
func closeShared() {
	if sharedCl != nil {
		sharedCl.Close()
	}
}

// storeURL is the URL of a store named after the test on cl, with query q.
func storeURL(t testing.TB, scheme string, cl *etcdtest.Cluster, q string) string {
	name := strings.NewReplacer("/", "-", " ", "_", "=", "-").Replace(t.Name()) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	u := scheme + "://" + strings.Join(hostsOf(cl.Endpoints()), ",") + "/" + name
	if q != "" {
		u += "?" + q
	}
	return u
}

// The "etcdweak" scheme: the next store opened with it gets weakKnob and
// weakHook (etcdkv.Config.Weaken).
var (
	weakMu   sync.Mutex
	weakKnob string
	weakHook func()
)

func init() {
	backend.Register("etcdweak", func(ctx context.Context, cfg backend.Config) (backend.Backend, string, error) {
		c, display, err := parseURL("etcd" + strings.TrimPrefix(cfg.URL, "etcdweak"))
		if err != nil {
			return nil, "", err
		}
		weakMu.Lock()
		err = c.Weaken(weakKnob, weakHook)
		weakMu.Unlock()
		if err != nil {
			return nil, "", err
		}
		c.Logger = cfg.Logger
		b, err := etcdkv.Open(ctx, c)
		if err != nil {
			return nil, "", err
		}
		return b, "etcdweak" + strings.TrimPrefix(display, "etcd"), nil
	})
}

// setWeak sets what the next etcdweak store gets.
func setWeak(knob string, hook func()) {
	weakMu.Lock()
	defer weakMu.Unlock()
	weakKnob, weakHook = knob, hook
}
