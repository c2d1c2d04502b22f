//go:build unix

package etcdtest

// cluster_unix_test.go: the harness itself — a cluster starts, serves, survives
// its leader's SIGKILL and a member's SIGSTOP, restarts a member, and leaves
// no process behind.
//
// May touch: the clusters it starts.

import (
	"context"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestClusterFaults(t *testing.T) {
	c := Start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(ctx, "k", "1"); err != nil {
		t.Fatal(err)
	}
	leader, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pid := c.PID(leader)
	if err := c.Kill(leader); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("member %d (pid %d) still runs after Kill", leader, pid)
	}
	// The two others elect a new leader; the client fails over to them.
	if _, err := c.WaitLeader(ctx, leader); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "k", "2"); err != nil {
		t.Fatalf("put after the leader's kill: %v", err)
	}
	if err := c.Restart(ctx, leader); err != nil {
		t.Fatal(err)
	}
	// The restarted member has the write made while it was dead.
	one, err := clientv3.New(clientv3.Config{Endpoints: []string{c.Endpoint(leader)}, DialTimeout: 5 * time.Second, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	resp, err := one.Get(ctx, "k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "2" {
		t.Fatalf("restarted member reads %v, %v; want k=2", resp, err)
	}
	// A paused follower: the two others keep a quorum and serve a client
	// that talks to them. (A client whose connection goes to the paused
	// process waits on it: the kernel still holds its socket open.)
	leader, err = c.WaitLeader(ctx, -1)
	if err != nil {
		t.Fatal(err)
	}
	paused := (leader + 1) % c.Size()
	if err := c.Stop(paused); err != nil {
		t.Fatal(err)
	}
	var live []string
	for i, ep := range c.Endpoints() {
		if i != paused {
			live = append(live, ep)
		}
	}
	two, err := clientv3.New(clientv3.Config{Endpoints: live, DialTimeout: 5 * time.Second, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer two.Close()
	if _, err := two.Put(ctx, "k", "3"); err != nil {
		t.Fatalf("put with member %d paused: %v", paused, err)
	}
	if err := c.Cont(paused); err != nil {
		t.Fatal(err)
	}
	// Resumed, it catches up.
	pctx, cancel2 := context.WithTimeout(ctx, 20*time.Second)
	defer cancel2()
	back, err := clientv3.New(clientv3.Config{Endpoints: []string{c.Endpoint(paused)}, DialTimeout: 5 * time.Second, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	if resp, err := back.Get(pctx, "k"); err != nil || string(resp.Kvs[0].Value) != "3" {
		t.Fatalf("resumed member reads %v, %v; want k=3", resp, err)
	}
	pids := []int{c.PID(0), c.PID(1), c.PID(2)}
	c.Close()
	for _, p := range pids {
		if err := syscall.Kill(p, 0); err == nil {
			t.Errorf("member pid %d still runs after Close", p)
		}
	}
}
