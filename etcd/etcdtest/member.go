// Package etcdtest starts a real etcd cluster for tests: every member is an
// embedded etcd server (go.etcd.io/etcd/server/v3/embed) in its own OS
// process — the test binary re-executed — listening on loopback ports chosen
// free, with its data in a temporary directory, so a test can SIGKILL,
// SIGSTOP, SIGCONT and restart a member like a real host.
//
// A test binary that uses it calls Main first thing in its TestMain:
//
//	func TestMain(m *testing.M) { etcdtest.Main(); os.Exit(m.Run()) }
//
// This file holds the member side: what the re-executed binary runs.
//
// May touch: the member's data directory and log file, its loopback ports.
package etcdtest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"

	"go.etcd.io/etcd/server/v3/embed"
)

// envMember names the environment variable that makes the test binary a
// cluster member; its value is the member's spec as JSON.
const envMember = "PSBASE_ETCDTEST_MEMBER"

// spec is what a member process is told: who it is and where the others are.
type spec struct {
	Name            string
	Dir             string
	ClientURL       string
	PeerURL         string
	InitialCluster  string
	State           string // "new" or "existing"
	Token           string
	MaxTxnOps       uint
	MaxRequestBytes uint
	Fsync           bool // false: UnsafeNoFsync
	LogFile         string
}

// Main makes the test binary a cluster member when the parent started it as
// one, and never returns then; otherwise it returns at once. Call it first
// in TestMain.
func Main() {
	s := os.Getenv(envMember)
	if s == "" {
		return
	}
	os.Exit(runMember(s, os.Stdin, os.Stdout))
}

// runMember runs one member until it fails or its parent goes away (its
// stdin closes: the portable orphan guard beside Pdeathsig on Linux). It
// prints "READY" once the member serves clients as part of the cluster (it
// has published itself through Raft, so a leader and a quorum exist), or
// "ERROR <text>" if it cannot start.
func runMember(js string, stdin io.Reader, stdout io.Writer) int {
	var sp spec
	if err := json.Unmarshal([]byte(js), &sp); err != nil {
		fmt.Fprintf(stdout, "ERROR bad spec: %v\n", err)
		return 2
	}
	cu, err1 := url.Parse(sp.ClientURL)
	pu, err2 := url.Parse(sp.PeerURL)
	if err1 != nil || err2 != nil {
		fmt.Fprintf(stdout, "ERROR bad URL: %v %v\n", err1, err2)
		return 2
	}
	cfg := embed.NewConfig()
	cfg.Name = sp.Name
	cfg.Dir = sp.Dir
	cfg.ListenClientUrls = []url.URL{*cu}
	cfg.AdvertiseClientUrls = []url.URL{*cu}
	cfg.ListenPeerUrls = []url.URL{*pu}
	cfg.AdvertisePeerUrls = []url.URL{*pu}
	cfg.InitialCluster = sp.InitialCluster
	cfg.ClusterState = sp.State
	cfg.InitialClusterToken = sp.Token
	cfg.LogLevel = "warn"
	cfg.LogOutputs = []string{sp.LogFile}
	// A SIGKILLed process loses nothing the kernel already has, so the
	// tests' kills do not need the fsync; a power cut would (not tested).
	// Options.Fsync turns it back on (benchmarks).
	cfg.UnsafeNoFsync = !sp.Fsync
	if sp.MaxTxnOps > 0 {
		cfg.MaxTxnOps = sp.MaxTxnOps
	}
	if sp.MaxRequestBytes > 0 {
		cfg.MaxRequestBytes = sp.MaxRequestBytes
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		fmt.Fprintf(stdout, "ERROR %v\n", err)
		return 1
	}
	defer e.Close()
	gone := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, bufio.NewReader(stdin))
		close(gone)
	}()
	select {
	case <-e.Server.ReadyNotify():
		fmt.Fprintln(stdout, "READY")
	case err := <-e.Err():
		fmt.Fprintf(stdout, "ERROR %v\n", err)
		return 1
	case <-gone:
		return 0
	}
	select {
	case err := <-e.Err():
		fmt.Fprintf(stdout, "ERROR %v\n", err)
		return 1
	case <-e.Server.StopNotify():
		return 1
	case <-gone:
		return 0
	}
}
