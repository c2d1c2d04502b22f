package main

// etcd.go: the psbase-etcd systems — which cells they run in, the endpoint
// each worker prefers, and the members' disk figures of each round (what the
// cluster's own fsync costs) in the report. The clusters themselves are in
// etcd_cluster.go.
//
// May touch: nothing (figures and text).

import (
	"fmt"
	"slices"
	"strings"
)

// The systems on an etcd cluster.
const (
	sysPsbaseEtcd        = "psbase-etcd"         // psbase on a 3-member etcd cluster, members fsync (as in production)
	sysPsbaseEtcdNoFsync = "psbase-etcd-nofsync" // the same on a cluster run with UnsafeNoFsync: what fsync costs
)

// The etcd clusters' transaction limits (the server's --max-txn-ops and
// --max-request-bytes, mirrored in the store URL): raised from etcd's 128
// operations and 1.5 MiB so that the read scenario's 100 000-record store is
// built in a few hundred transactions. A single-record operation, which is
// all the cells run, is far below either limit.
const (
	etcdMaxTxnOps       = 4096
	etcdMaxRequestBytes = 8 << 20
	etcdBuildChunk      = 500 // records per build transaction (an insert is a few operations)
	etcdMaxProcs        = 50  // the largest N the etcd systems run at
)

// isEtcd reports whether sys is on an etcd cluster.
func isEtcd(sys string) bool { return sys == sysPsbaseEtcd || sys == sysPsbaseEtcdNoFsync }

// runsIn reports whether sys runs in cell cs: a cell may name its systems
// (Only), and the etcd systems run the write, counter and read scenarios at
// N ≤ 50 (without fsync: the writing ones only, for the fsync cost).
func runsIn(sys string, cs cellSpec) bool {
	if len(cs.Only) > 0 && !slices.Contains(cs.Only, sys) {
		return false
	}
	switch sys {
	case sysPsbaseEtcd:
		return cs.Procs <= etcdMaxProcs && slices.Contains([]string{scWrite, scCounter, scCounterTxn, scRead}, cs.Scenario)
	case sysPsbaseEtcdNoFsync:
		return cs.Procs <= etcdMaxProcs && slices.Contains([]string{scWrite, scCounter}, cs.Scenario)
	}
	return true
}

// localAndEtcd are the systems of the cells added for the etcd comparison.
var localAndEtcd = []string{sysPsbase, sysPsbaseEtcd, sysPsbaseEtcdNoFsync}

// preferEndpoint keeps only the endpoint of member i mod the members in a
// store URL: worker i talks to that member (the client balances round-robin
// over every endpoint it is given, so a list would not be a preference).
// Writes still go through the leader, which the member forwards them to.
func preferEndpoint(url string, i int) string {
	rest := strings.TrimPrefix(url, "etcd://")
	hosts, tail, _ := strings.Cut(rest, "/")
	hs := strings.Split(hosts, ",")
	return "etcd://" + hs[i%len(hs)] + "/" + tail
}

// etcdDisk is what a cluster's members did on disk during one round, all
// members together (etcd's own WAL fsync and backend commit histograms).
type etcdDisk struct {
	WALFsyncs       int64   `json:"wal_fsyncs"`
	WALFsyncMeanUs  float64 `json:"wal_fsync_mean_us"`
	FsyncsPerOp     float64 `json:"wal_fsyncs_per_op"`
	FsyncUsPerOp    float64 `json:"wal_fsync_us_per_op"` // fsync time of all members per successful operation
	BackendCommits  int64   `json:"backend_commits"`
	BackendCommitUs float64 `json:"backend_commit_mean_us"`
	MemberCPUSec    float64 `json:"member_cpu_s"` // user+system CPU of the three member processes
}

// medianEtcdDisk is the median of every etcd disk figure over the rounds
// that have one (nil if none has).
func medianEtcdDisk(rounds []roundResult) *etcdDisk {
	var ds []*etcdDisk
	for _, r := range rounds {
		if r.Etcd != nil {
			ds = append(ds, r.Etcd)
		}
	}
	if len(ds) == 0 {
		return nil
	}
	f := func(get func(*etcdDisk) float64) float64 {
		var xs []float64
		for _, d := range ds {
			xs = append(xs, get(d))
		}
		return median(xs)
	}
	return &etcdDisk{
		WALFsyncs:       int64(f(func(d *etcdDisk) float64 { return float64(d.WALFsyncs) })),
		WALFsyncMeanUs:  f(func(d *etcdDisk) float64 { return d.WALFsyncMeanUs }),
		FsyncsPerOp:     f(func(d *etcdDisk) float64 { return d.FsyncsPerOp }),
		FsyncUsPerOp:    f(func(d *etcdDisk) float64 { return d.FsyncUsPerOp }),
		BackendCommits:  int64(f(func(d *etcdDisk) float64 { return float64(d.BackendCommits) })),
		BackendCommitUs: f(func(d *etcdDisk) float64 { return d.BackendCommitUs }),
		MemberCPUSec:    f(func(d *etcdDisk) float64 { return d.MemberCPUSec }),
	}
}

// etcdMarkdown is the report's section comparing local psbase with
// psbase-etcd, and the etcd cluster's fsync cost; empty when no etcd system
// ran.
func (rep *report) etcdMarkdown() string {
	if !slices.ContainsFunc(rep.Systems, isEtcd) {
		return ""
	}
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("## On an etcd cluster\n\n")
	p("psbase-etcd: the same psbase calls on `etcd://` stores of a 3-member cluster on loopback (this binary re-executed as each member, data in the data dir, every member fsyncing its WAL as a production etcd does), each worker talking to one member (worker i → member i mod 3). psbase-etcd-nofsync: the same on a cluster run with `UnsafeNoFsync`, to show what the fsyncs cost. All members share this machine's cores and disk. *WAL fsyncs/op* and *fsync µs* are etcd's own `etcd_disk_wal_fsync_duration_seconds` histogram, all three members, over the round (median of rounds); *fsync ms/op* is the members' fsync time per successful operation, summed over members (they sync in parallel); *CPU ms/op* is the CPU time of the three members plus the workers per successful operation (local psbase: the workers').\n\n")
	p("| cell | psbase ops/s | p50 ms | p99 ms | psbase-etcd ops/s | p50 ms | p99 ms | nofsync ops/s | p50 ms | p99 ms | WAL fsyncs/op | fsync µs | fsync ms/op | CPU ms/op: psbase | psbase-etcd |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	cellOf := func(s *systemResult) string {
		if s == nil {
			return "– | – | –"
		}
		m := s.Median
		return fmt.Sprintf("%.0f | %.2f | %.2f", m.OpsPerSec, m.P50Us/1e3, m.P99Us/1e3)
	}
	for _, c := range rep.Cells {
		e := rep.find(c.Label, sysPsbaseEtcd)
		nf := rep.find(c.Label, sysPsbaseEtcdNoFsync)
		if e == nil && nf == nil {
			continue
		}
		local := rep.find(c.Label, sysPsbase)
		disk, cpu := "– | – | –", "– | –"
		if e != nil && e.Median.Etcd != nil {
			d := e.Median.Etcd
			disk = fmt.Sprintf("%.1f | %.0f | %.2f", d.FsyncsPerOp, d.WALFsyncMeanUs, d.FsyncUsPerOp/1e3)
			if local != nil && local.Median.Ops > 0 && e.Median.Ops > 0 {
				cpu = fmt.Sprintf("%.2f | %.2f", 1e3*local.Median.CPUSec/float64(local.Median.Ops),
					1e3*(e.Median.CPUSec+d.MemberCPUSec)/float64(e.Median.Ops))
			}
		}
		p("| %s | %s | %s | %s | %s | %s |\n", c.Label, cellOf(local), cellOf(e), cellOf(nf), disk, cpu)
	}
	p("\n")
	return b.String()
}
