package etcdtest

// cluster.go: the parent side — starting, faulting and stopping the member
// processes of one test cluster.
//
// May touch: the member processes it started, a temporary directory of the
// test (or one it makes), loopback ports it checked free.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Options configure a cluster. The zero value is a 3-member cluster with the
// server's default limits.
type Options struct {
	Members         int           // default 3
	MaxTxnOps       uint          // the server's --max-txn-ops; 0: its default (128)
	MaxRequestBytes uint          // the server's --max-request-bytes; 0: its default (1.5 MiB)
	StartTimeout    time.Duration // how long to wait for every member's READY; default 60 s
	Dir             string        // where the data goes; default a new temporary directory
	// Fsync makes every member fsync its write-ahead log and backend as a
	// production etcd does. Off by default: the members run with
	// UnsafeNoFsync, which a SIGKILL cannot tell apart (the kernel keeps
	// what was written) and which keeps the tests fast; a benchmark turns
	// it on for honest figures.
	Fsync bool
}

// Cluster is a running test cluster. Its methods are safe for concurrent use.
type Cluster struct {
	opts    Options
	dir     string
	ownDir  bool
	token   string
	mu      sync.Mutex
	members []*member
}

// member is one member process and what it needs to be restarted.
type member struct {
	spec  spec
	cmd   *exec.Cmd
	stdin interface{ Close() error }
	ready chan error    // READY (nil) or ERROR (the text) from this run
	done  chan struct{} // closed when this run's process has exited
}

// Start starts a cluster for t and stops it when t ends (t.Cleanup; and the
// members die with the test process even if it is killed: Pdeathsig on
// Linux, their stdin closing elsewhere). It fails t if the cluster cannot
// start.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	c, err := StartCluster(opts)
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// StartCluster starts a cluster; the caller must Close it. Ports are chosen
// free and re-chosen (up to three times) if one was taken before a member
// bound it.
func StartCluster(opts Options) (*Cluster, error) {
	if opts.Members <= 0 {
		opts.Members = 3
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 60 * time.Second
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var c *Cluster
		c, err = startOnce(opts, attempt)
		if err == nil {
			return c, nil
		}
		if !strings.Contains(err.Error(), "address already in use") {
			return nil, err
		}
	}
	return nil, err
}

func startOnce(opts Options, attempt int) (*Cluster, error) {
	c := &Cluster{opts: opts, dir: opts.Dir, token: fmt.Sprintf("psbase-test-%d-%d", os.Getpid(), attempt)}
	if c.dir == "" {
		d, err := os.MkdirTemp("", "etcdtest-")
		if err != nil {
			return nil, err
		}
		c.dir, c.ownDir = d, true
	}
	ports, err := freePorts(2 * opts.Members)
	if err != nil {
		return nil, err
	}
	var initial []string
	for i := range opts.Members {
		name := fmt.Sprintf("m%d", i)
		peer := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1])
		initial = append(initial, name+"="+peer)
	}
	for i := range opts.Members {
		name := fmt.Sprintf("m%d", i)
		dir := filepath.Join(c.dir, fmt.Sprintf("try%d", attempt), name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		c.members = append(c.members, &member{spec: spec{
			Name:            name,
			Dir:             filepath.Join(dir, "data"),
			ClientURL:       fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			PeerURL:         fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
			InitialCluster:  strings.Join(initial, ","),
			State:           "new",
			Token:           c.token,
			MaxTxnOps:       opts.MaxTxnOps,
			MaxRequestBytes: opts.MaxRequestBytes,
			Fsync:           opts.Fsync,
			LogFile:         filepath.Join(dir, "etcd.log"),
		}})
	}
	for _, m := range c.members {
		if err := m.spawn(); err != nil {
			c.Close()
			return nil, err
		}
	}
	// The members of a new cluster wait for each other: each READY needs a
	// quorum, so all are awaited together.
	deadline := time.After(opts.StartTimeout)
	for i, m := range c.members {
		select {
		case err := <-m.ready:
			if err != nil {
				c.Close()
				return nil, fmt.Errorf("member %d: %w (log %s)", i, err, m.spec.LogFile)
			}
		case <-deadline:
			c.Close()
			return nil, fmt.Errorf("member %d not ready within %v (log %s)", i, opts.StartTimeout, m.spec.LogFile)
		}
	}
	return c, nil
}

// freePorts returns n distinct loopback ports that could be bound just now,
// drawn below Linux's ephemeral range (32768+) so that no client socket of
// another program takes one between the check and the member's bind.
func freePorts(n int) ([]int, error) {
	seen := map[int]bool{}
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			return nil, errors.New("no free loopback ports")
		}
		p := 20000 + rand.IntN(12000)
		if seen[p] {
			continue
		}
		seen[p] = true
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l.Close()
		ports = append(ports, p)
	}
	return ports, nil
}

// spawn starts the member's process and the reader of its stdout.
func (m *member) spawn() error {
	js, err := json.Marshal(m.spec)
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), envMember+"="+string(js))
	cmd.SysProcAttr = sysProcAttr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	m.cmd, m.stdin = cmd, stdin
	m.ready = make(chan error, 1)
	m.done = make(chan struct{})
	ready, done := m.ready, m.done
	go func() {
		sc := bufio.NewScanner(stdout)
		said := false
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "READY" && !said:
				said = true
				ready <- nil
			case strings.HasPrefix(line, "ERROR ") && !said:
				said = true
				ready <- errors.New(strings.TrimPrefix(line, "ERROR "))
			}
		}
		if !said {
			ready <- errors.New("member exited before it was ready")
		}
		_ = cmd.Wait()
		close(done)
	}()
	return nil
}

// Endpoints returns every member's client URL.
func (c *Cluster) Endpoints() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.spec.ClientURL)
	}
	return eps
}

// Endpoint returns member i's client URL.
func (c *Cluster) Endpoint(i int) string { return c.member(i).spec.ClientURL }

// Size is the number of members.
func (c *Cluster) Size() int { return len(c.members) }

// PID returns member i's current process ID.
func (c *Cluster) PID(i int) int {
	m := c.member(i)
	c.mu.Lock()
	defer c.mu.Unlock()
	return m.cmd.Process.Pid
}

func (c *Cluster) member(i int) *member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[i]
}

// Kill SIGKILLs member i and waits until its process has exited.
func (c *Cluster) Kill(i int) error {
	m := c.member(i)
	c.mu.Lock()
	p, done := m.cmd.Process, m.done
	c.mu.Unlock()
	if err := p.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	<-done
	return nil
}

// Stop pauses member i (SIGSTOP): a frozen host.
func (c *Cluster) Stop(i int) error {
	m := c.member(i)
	c.mu.Lock()
	defer c.mu.Unlock()
	return pause(m.cmd.Process)
}

// Cont resumes member i (SIGCONT).
func (c *Cluster) Cont(i int) error {
	m := c.member(i)
	c.mu.Lock()
	defer c.mu.Unlock()
	return resume(m.cmd.Process)
}

// Restart starts member i again on its data directory (after Kill, or it
// kills it first) and waits until it is READY: back in the cluster, caught
// up far enough to publish itself through Raft.
func (c *Cluster) Restart(ctx context.Context, i int) error {
	m := c.member(i)
	c.mu.Lock()
	done := m.done
	c.mu.Unlock()
	select {
	case <-done:
	default:
		if err := c.Kill(i); err != nil {
			return err
		}
	}
	c.mu.Lock()
	m.spec.State = "existing"
	err := m.spawn()
	ready := m.ready
	c.mu.Unlock()
	if err != nil {
		return err
	}
	select {
	case err := <-ready:
		if err != nil {
			return fmt.Errorf("member %d: %w (log %s)", i, err, m.spec.LogFile)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("member %d not ready: %w (log %s)", i, ctx.Err(), m.spec.LogFile)
	}
}

// Leader returns the index of the member that is the Raft leader now, as
// the members that answer within ctx report it.
func (c *Cluster) Leader(ctx context.Context) (int, error) {
	eps := c.Endpoints()
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: quietLogger()})
	if err != nil {
		return -1, err
	}
	defer cli.Close()
	var lastErr error
	for _, ep := range eps {
		st, err := cli.Status(ctx, ep)
		if err != nil {
			lastErr = err
			continue
		}
		if st.Header.MemberId == st.Leader {
			for i, e := range eps {
				if e == ep {
					return i, nil
				}
			}
		}
	}
	if lastErr == nil {
		lastErr = errors.New("no member says it leads")
	}
	return -1, lastErr
}

// WaitLeader waits until a member other than skip (a killed or paused one;
// -1 for none) reports a leader that is not skip either, and returns the
// leader's index: the end of an election as an event, asked for every
// 50 ms until ctx ends.
func (c *Cluster) WaitLeader(ctx context.Context, skip int) (int, error) {
	eps := c.Endpoints()
	for {
		for i, ep := range eps {
			if i == skip {
				continue
			}
			if l, ok := c.leaderSeenBy(ctx, ep); ok && l != skip && l >= 0 {
				return l, nil
			}
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("no leader elected: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// leaderSeenBy asks one member who leads, within a second.
func (c *Cluster) leaderSeenBy(ctx context.Context, ep string) (int, bool) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: time.Second, Logger: quietLogger()})
	if err != nil {
		return -1, false
	}
	defer cli.Close()
	st, err := cli.Status(ctx, ep)
	if err != nil || st.Leader == 0 {
		return -1, false
	}
	ml, err := cli.MemberList(ctx)
	if err != nil {
		return -1, false
	}
	for _, m := range ml.Members {
		if m.ID != st.Leader {
			continue
		}
		for i, e := range c.Endpoints() {
			for _, u := range m.ClientURLs {
				if u == e {
					return i, true
				}
			}
		}
	}
	return -1, false
}

// Close SIGKILLs every member (resuming a stopped one is not needed for
// that) and waits for them; it removes the data directory if it made it.
func (c *Cluster) Close() {
	c.mu.Lock()
	ms := append([]*member(nil), c.members...)
	c.mu.Unlock()
	for _, m := range ms {
		if m.cmd == nil || m.cmd.Process == nil {
			continue
		}
		_ = m.stdin.Close()
		_ = m.cmd.Process.Kill()
		<-m.done
	}
	if c.ownDir {
		_ = os.RemoveAll(c.dir)
	}
}
