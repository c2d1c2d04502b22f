package etcdtest

// fsync_test.go: Options.Fsync reaches the members — with it every member
// fdatasyncs its WAL for the writes it is sent; without it (the default,
// the negative control) none does, and the same check must fail — and the
// metrics the count is read from (DiskStats, CPUTime).
//
// May touch: the clusters it starts.

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// everyMemberFsyncs is the check: each member's WAL fsyncs grew by at least
// writes while writes puts were committed.
func everyMemberFsyncs(before, after []DiskStats, writes int64) error {
	for i := range after {
		if d := after[i].Sub(before[i]); d.WALFsyncs < writes {
			return fmt.Errorf("member %d: %d WAL fsyncs for %d committed puts", i, d.WALFsyncs, writes)
		}
	}
	return nil
}

// putAndCount commits writes puts one by one (each its own Raft entry,
// so each needs its own fsync on every member) and returns every member's
// disk counters before and after.
func putAndCount(t *testing.T, c *Cluster, writes int) (before, after []DiskStats) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	read := func() []DiskStats {
		var out []DiskStats
		for i := range c.Size() {
			ds, err := c.DiskStats(ctx, i)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, ds)
		}
		return out
	}
	before = read()
	for i := range writes {
		if _, err := cli.Put(ctx, "k", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Followers may append the last entry a moment after the leader
	// answered: wait for the event (every member's fsyncs counted), or
	// for the deadline — with fsync off the counts stay at 0.
	deadline := time.Now().Add(5 * time.Second)
	for {
		after = read()
		if everyMemberFsyncs(before, after, int64(writes)) == nil || time.Now().After(deadline) {
			return before, after
		}
		time.Sleep(50 * time.Millisecond) // polling interval of a condition with a deadline
	}
}

func TestFsyncOption(t *testing.T) {
	const writes = 20
	t.Run("on", func(t *testing.T) {
		t.Parallel()
		c := Start(t, Options{Fsync: true})
		before, after := putAndCount(t, c, writes)
		if err := everyMemberFsyncs(before, after, writes); err != nil {
			t.Fatalf("Options{Fsync: true}: %v", err)
		}
		var total DiskStats
		for i := range after {
			total = total.Add(after[i].Sub(before[i]))
		}
		t.Logf("fsync on: %d WAL fsyncs on 3 members for %d puts, mean %v", total.WALFsyncs, writes,
			total.WALFsyncTime/time.Duration(max(total.WALFsyncs, 1)))
		// The member's CPU time is read from the same page; a series the
		// page lacks is an error, not a zero (the control of the parser).
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if cpu, err := c.CPUTime(ctx, 0); err != nil || cpu <= 0 {
			t.Fatalf("CPUTime(0) = %v, %v; want > 0", cpu, err)
		}
		if _, err := c.metrics(ctx, 0, "etcd_disk_wal_fsync_duration_seconds_count", "psbase_no_such_series"); err == nil {
			t.Fatal("metrics found a series the member does not serve")
		}
	})
	t.Run("off-control", func(t *testing.T) {
		t.Parallel()
		c := Start(t, Options{})
		before, after := putAndCount(t, c, writes)
		if err := everyMemberFsyncs(before, after, writes); err == nil {
			t.Fatalf("the default (UnsafeNoFsync) cluster passed the fsync check: the check cannot fail")
		} else {
			t.Logf("control caught, as it must: %v", err)
		}
	})
}
