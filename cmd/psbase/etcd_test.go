package main

// etcd_test.go: the CLI on etcd:// stores, against a real 3-member test
// cluster (etcdtest): every command a real process (this test binary run
// as psbase), the lock held by another real process while "locks" and a
// writer look at it, an unreachable cluster, and the local-only commands.
//
// May touch: the test cluster's member processes and data, a temporary
// directory, the child processes it starts.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/psbase/psbase"
	"github.com/psbase/psbase/etcd/etcdtest"
)

// roleEnv makes this test binary act as something else: "cli" (psbase
// itself) or "hold" (a process holding a store's lock, etcdHoldMain).
const roleEnv = "PSBASE_CLI_TEST_ROLE"

// etcdRoles runs the role roleEnv asks for, if any; it does not return then.
func etcdRoles() {
	switch os.Getenv(roleEnv) {
	case "cli":
		main()
	case "hold":
		etcdHoldMain()
	}
}

// etcdHoldMain (role "hold", args: URL) opens the store, begins a writable
// transaction (which takes the store's lock), prints "HOLDING <pid>" and
// holds it until a line arrives on stdin, then rolls back.
func etcdHoldMain() {
	ctx := context.Background()
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "hold:", err)
		os.Exit(1)
	}
	s, err := psbase.Open(ctx, os.Args[len(os.Args)-1])
	if err != nil {
		fail(err)
	}
	tx, err := s.Begin(ctx, true)
	if err != nil {
		fail(err)
	}
	fmt.Printf("HOLDING %d\n", os.Getpid())
	bufio.NewReader(os.Stdin).ReadString('\n')
	tx.Rollback()
	s.Close()
	os.Exit(0)
}

// cliResult is one run of the CLI.
type cliResult struct {
	code           int
	stdout, stderr string
	took           time.Duration
}

// cli runs psbase ARGS as a child process (this binary in the "cli" role).
func cli(t *testing.T, args ...string) cliResult {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(os.Environ(), roleEnv+"=cli")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err = cmd.Run()
	r := cliResult{stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("psbase %v: %v", args, err)
	}
	return r
}

// want runs psbase ARGS and fails t unless it exits with code; it returns
// stdout.
func want(t *testing.T, code int, args ...string) string {
	t.Helper()
	r := cli(t, args...)
	if r.code != code {
		t.Fatalf("psbase %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
	}
	return r.stdout
}

// storeURL is the URL of store name on the cluster, with two of its
// endpoints as host:port.
func storeURL(cl *etcdtest.Cluster, name string) string {
	var hosts []string
	for _, ep := range cl.Endpoints()[:2] {
		hosts = append(hosts, strings.TrimPrefix(strings.TrimPrefix(ep, "http://"), "https://"))
	}
	return "etcd://" + strings.Join(hosts, ",") + "/" + name
}

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestEtcdCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-member etcd cluster")
	}
	cl := etcdtest.Start(t, etcdtest.Options{})
	t.Run("records", func(t *testing.T) { testEtcdRecords(t, storeURL(cl, "clijobs")) })
	t.Run("locks", func(t *testing.T) { testEtcdLocks(t, storeURL(cl, "clilocks")) })
	t.Run("unreachable", func(t *testing.T) { testEtcdUnreachable(t, storeURL(cl, "clilive")) })
	t.Run("localonly", func(t *testing.T) { testEtcdLocalOnly(t, storeURL(cl, "clilocal")) })
}

// staleUpdate runs an update of record 1 carrying version 1 (stale: the
// record is at a later version) and reports what a correct CLI must show:
// exit 4 and the record unchanged. withVersion false is the negative
// control: the same update with the version ignored (not passed).
func staleUpdate(t *testing.T, url string, withVersion bool) error {
	args := []string{"update", url, "1", "n=99"}
	if withVersion {
		args = append(args, "--if-version", "1")
	}
	r := cli(t, args...)
	got := strings.TrimSpace(want(t, 0, "get", url, "1", "n"))
	if r.code != exitConflict || got == "99" {
		return fmt.Errorf("stale update: exit %d (want %d), n is now %s; stderr: %s", r.code, exitConflict, got, r.stderr)
	}
	return nil
}

func testEtcdRecords(t *testing.T, url string) {
	want(t, 0, "create", url, "name:string!", "n:int", "tag:string?")
	want(t, exitExists, "create", url, "n:int")
	if got := want(t, 0, "insert", url, "name=a", "n=1"); got != "1\n" {
		t.Fatalf("insert printed %q", got)
	}
	want(t, 0, "insert", url, "name=b", "n=10", "tag=x")
	want(t, exitDuplicate, "insert", url, "name=a")
	if got := want(t, 0, "get", url, "1", "name", "n", "version"); got != "a\t1\t1\n" {
		t.Fatalf("get printed %q", got)
	}
	want(t, 0, "update", url, "1", "n=5", "--if-version", "1")
	if err := staleUpdate(t, url, true); err != nil {
		t.Fatal(err)
	}
	if err := staleUpdate(t, url, false); err == nil {
		t.Fatal("negative control: an update that ignores the version passed the conflict check")
	}
	want(t, 0, "update", url, "1", "n=5") // undo the control's write
	if got := want(t, 0, "incr", url, "1", "n", "-1"); got != "4\n" {
		t.Fatalf("incr printed %q", got)
	}
	if got := want(t, 0, "select", url, "n>=4", "--sort", "-n", "--no-header", "--format", "tsv"); !strings.HasPrefix(got, "2\t") || strings.Count(got, "\n") != 2 {
		t.Fatalf("select printed %q", got)
	}
	if got := want(t, 0, "count", url, "tag is null"); got != "1\n" {
		t.Fatalf("count printed %q", got)
	}
	if got := want(t, 0, "check", url); !strings.HasPrefix(got, "ok: 2 record(s)") {
		t.Fatalf("check printed %q", got)
	}
	want(t, 0, "delete", url, "2")
	want(t, exitNotFound, "get", url, "2")
	if got := want(t, 0, "count", url); got != "1\n" {
		t.Fatalf("count after delete printed %q", got)
	}
	if got := want(t, 0, "stats", url, "--json"); !strings.Contains(got, `"records":1`) {
		t.Fatalf("stats printed %q", got)
	}
	want(t, exitNoStore, "get", strings.Replace(url, "/clijobs", "/clinone", 1), "1")
}

// holderOf parses "psbase locks --json" output and reports whether it names
// pid on host as the holder, with an op and a lease.
func holderOf(out string, pid int, host string) error {
	var first map[string]any
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(&first); err != nil {
		return fmt.Errorf("locks printed no holder: %q (%v)", out, err)
	}
	gotPID, _ := first["pid"].(float64)
	if int(gotPID) != pid || first["host"] != host || first["state"] != "holding" || first["lease"] == "" || first["lease"] == nil || first["op"] == "" {
		return fmt.Errorf("locks names %v, want pid %d on %s holding, with op and lease", first, pid, host)
	}
	return nil
}

func testEtcdLocks(t *testing.T, url string) {
	want(t, 0, "create", url, "n:int")
	if out := want(t, 0, "locks", url, "--json"); out != "" {
		t.Fatalf("locks of a free store printed %q", out)
	}
	exe, _ := os.Executable()
	hold := exec.Command(exe, url)
	hold.Env = append(os.Environ(), roleEnv+"=hold")
	stdin, _ := hold.StdinPipe()
	stdout, _ := hold.StdoutPipe()
	hold.Stderr = os.Stderr
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	defer hold.Process.Kill()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if !strings.HasPrefix(line, "HOLDING ") {
		t.Fatalf("holder said %q, %v", line, err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "HOLDING ")))
	host, _ := os.Hostname()

	out := want(t, 0, "locks", url, "--json")
	if err := holderOf(out, pid, host); err != nil {
		t.Fatal(err)
	}
	table := want(t, 0, "locks", url, "--format", "tsv")
	if !strings.HasPrefix(table, "host\tpid\tstate\top\tfor\tsince\tlease\n"+host+"\t"+strconv.Itoa(pid)+"\tholding\t") {
		t.Fatalf("locks table:\n%s", table)
	}
	// A writer gives up after --timeout, naming the holder.
	r := cli(t, "--timeout", "1s", "insert", url, "n=1")
	if r.code != exitTimeout || !strings.Contains(r.stderr, strconv.Itoa(pid)) {
		t.Fatalf("insert while held: exit %d, stderr %s", r.code, r.stderr)
	}

	io.WriteString(stdin, "release\n")
	if err := hold.Wait(); err != nil {
		t.Fatalf("holder: %v", err)
	}
	// Negative control: with the holder gone, the same check must fail.
	if err := holderOf(want(t, 0, "locks", url, "--json"), pid, host); err == nil {
		t.Fatal("negative control: holderOf accepted the output after the holder released")
	}
	want(t, 0, "insert", url, "n=1")
}

// unreachable reports whether a run is what a cluster with no endpoint up
// gives: the unavailable exit code, "no endpoint", the URL named, promptly.
func unreachable(r cliResult, name string, limit time.Duration) error {
	if r.code != exitUnavailable || !strings.Contains(r.stderr, "no endpoint") || !strings.Contains(r.stderr, name) || r.took > limit {
		return fmt.Errorf("exit %d after %v (limit %v): %s", r.code, r.took, limit, r.stderr)
	}
	return nil
}

func testEtcdUnreachable(t *testing.T, live string) {
	url := "etcd://" + closedPort(t) + "," + closedPort(t) + "/jobs"
	// The default dial timeout (5 s) bounds it; a loaded machine gets
	// generous slack, which still tells "ends" from "hangs".
	if err := unreachable(cli(t, "get", url, "1"), url, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	q := url + "?dial_timeout=1s"
	if err := unreachable(cli(t, "count", q), url, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := unreachable(cli(t, "--timeout", "1s", "locks", url), url, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	// Negative control: a live cluster does not pass for an unreachable one.
	want(t, 0, "create", live, "n:int")
	if err := unreachable(cli(t, "count", live), live, 20*time.Second); err == nil {
		t.Fatal("negative control: a reachable store passed the unreachable check")
	}
}

func testEtcdLocalOnly(t *testing.T, url string) {
	dir := t.TempDir()
	want(t, 0, "create", url, "n:int")
	want(t, 0, "insert", url, "n=7")
	local := filepath.Join(dir, "local.db")
	want(t, 0, "create", local, "n:int")
	// backup and cleanup work on a remote store: the backup is a local
	// store file with the record.
	backup := filepath.Join(dir, "b.db")
	want(t, 0, "backup", url, backup)
	if got := want(t, 0, "get", backup, "1", "n"); got != "7\n" {
		t.Fatalf("backup of the remote store: get printed %q", got)
	}
	want(t, 0, "cleanup", url)
	// restore and recover need a local file: exit 15, saying so.
	for _, args := range [][]string{
		{"restore", "DB", backup},
		{"recover", "DB", filepath.Join(dir, "r.db")},
	} {
		remote := append([]string{args[0], url}, args[2:]...)
		r := cli(t, remote...)
		if r.code != exitUnsupported || !strings.Contains(r.stderr, "needs a local store") || !strings.Contains(r.stderr, url) {
			t.Errorf("psbase %v: exit %d, want %d with a clear message; stderr: %s", remote, r.code, exitUnsupported, r.stderr)
		}
		// Negative control: on a local store the same command succeeds,
		// so the check above is about the store being remote.
		want(t, 0, append([]string{args[0], local}, args[2:]...)...)
	}
}
