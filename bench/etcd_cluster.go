//go:build !noetcd

package main

// etcd_cluster.go: the clusters of the psbase-etcd systems (etcdtest: this
// binary re-executed as each member) and the etcd:// scheme for their
// workers. Left out of the local workers' binary (build tag noetcd, see
// workers.go): linking etcd's server slows every process that carries it.
//
// May touch: the member processes it starts, their data under the run's
// data directory, loopback ports etcdtest checked free.

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	_ "github.com/psbase/psbase/etcd" // the etcd:// scheme
	"github.com/psbase/psbase/etcd/etcdtest"
)

// withEtcd: this binary can start clusters and run etcd workers.
const withEtcd = true

// etcdMain runs this process as an etcd member if it was started as one
// (and then never returns).
func etcdMain() { etcdtest.Main() }

// etcdClusters are the clusters of one run, by system.
type etcdClusters map[string]*etcdtest.Cluster

// startEtcd starts a cluster for each etcd system in systems, its data
// under dataDir (the disk being measured).
func startEtcd(systems []string, dataDir string, logf func(string, ...any)) (etcdClusters, error) {
	cs := etcdClusters{}
	for _, sys := range systems {
		if !isEtcd(sys) {
			continue
		}
		t := time.Now()
		c, err := etcdtest.StartCluster(etcdtest.Options{
			Fsync:           sys == sysPsbaseEtcd,
			MaxTxnOps:       etcdMaxTxnOps,
			MaxRequestBytes: etcdMaxRequestBytes,
			Dir:             filepath.Join(dataDir, sys),
		})
		if err != nil {
			cs.close()
			return nil, fmt.Errorf("start the %s cluster: %w", sys, err)
		}
		cs[sys] = c
		logf("started %s: 3 members on %s in %.1fs", sys, strings.Join(c.Endpoints(), ", "), time.Since(t).Seconds())
	}
	return cs, nil
}

func (cs etcdClusters) close() {
	for _, c := range cs {
		c.Close()
	}
}

// storeURL is the URL of the store name on sys's cluster, every member
// listed.
func (cs etcdClusters) storeURL(sys, name string) string {
	var hosts []string
	for _, ep := range cs[sys].Endpoints() {
		hosts = append(hosts, strings.TrimPrefix(ep, "http://"))
	}
	return fmt.Sprintf("etcd://%s/%s?max_txn_ops=%d&max_request_bytes=%d",
		strings.Join(hosts, ","), name, etcdMaxTxnOps, etcdMaxRequestBytes)
}

// memberCounters are every member's disk counters and CPU time, totalled.
type memberCounters struct {
	disk etcdtest.DiskStats
	cpu  time.Duration
}

// readCounters totals every member's counters now.
func readCounters(ctx context.Context, c *etcdtest.Cluster) (memberCounters, error) {
	var total memberCounters
	for i := range c.Size() {
		ds, err := c.DiskStats(ctx, i)
		if err != nil {
			return total, err
		}
		cpu, err := c.CPUTime(ctx, i)
		if err != nil {
			return total, err
		}
		total.disk = total.disk.Add(ds)
		total.cpu += cpu
	}
	return total, nil
}

// newEtcdDisk is the round's figures from the counters before and after,
// over ops successful operations.
func newEtcdDisk(before, after memberCounters, ops int) *etcdDisk {
	d := after.disk.Sub(before.disk)
	e := &etcdDisk{WALFsyncs: d.WALFsyncs, BackendCommits: d.BackendCommits, MemberCPUSec: (after.cpu - before.cpu).Seconds()}
	if d.WALFsyncs > 0 {
		e.WALFsyncMeanUs = float64(d.WALFsyncTime.Microseconds()) / float64(d.WALFsyncs)
	}
	if d.BackendCommits > 0 {
		e.BackendCommitUs = float64(d.BackendCommitTm.Microseconds()) / float64(d.BackendCommits)
	}
	if ops > 0 {
		e.FsyncsPerOp = float64(d.WALFsyncs) / float64(ops)
		e.FsyncUsPerOp = float64(d.WALFsyncTime.Microseconds()) / float64(ops)
	}
	return e
}
