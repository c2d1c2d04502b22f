package etcdtest

// metrics.go: what a member did — its WAL fsyncs, backend commits and CPU
// time, read from the Prometheus text the member serves at
// <client URL>/metrics.
//
// May touch: nothing (an HTTP GET to a member of this cluster).

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DiskStats are a member's cumulative disk counters since it started.
type DiskStats struct {
	WALFsyncs       int64         // fdatasyncs of the write-ahead log (0 without Options.Fsync)
	WALFsyncTime    time.Duration // their total duration
	BackendCommits  int64         // commits of the bbolt backend (batched: every 100 ms or 10 000 writes)
	BackendCommitTm time.Duration // their total duration, fsync included when Options.Fsync is set
}

// Sub returns the counters accumulated between before and s.
func (s DiskStats) Sub(before DiskStats) DiskStats {
	return DiskStats{
		WALFsyncs:       s.WALFsyncs - before.WALFsyncs,
		WALFsyncTime:    s.WALFsyncTime - before.WALFsyncTime,
		BackendCommits:  s.BackendCommits - before.BackendCommits,
		BackendCommitTm: s.BackendCommitTm - before.BackendCommitTm,
	}
}

// Add returns the sum of s and o (to total the members).
func (s DiskStats) Add(o DiskStats) DiskStats {
	return DiskStats{
		WALFsyncs:       s.WALFsyncs + o.WALFsyncs,
		WALFsyncTime:    s.WALFsyncTime + o.WALFsyncTime,
		BackendCommits:  s.BackendCommits + o.BackendCommits,
		BackendCommitTm: s.BackendCommitTm + o.BackendCommitTm,
	}
}

// DiskStats reads member i's disk counters (etcd's
// etcd_disk_wal_fsync_duration_seconds and
// etcd_disk_backend_commit_duration_seconds histograms).
func (c *Cluster) DiskStats(ctx context.Context, i int) (DiskStats, error) {
	var ds DiskStats
	m, err := c.metrics(ctx, i,
		"etcd_disk_wal_fsync_duration_seconds_count", "etcd_disk_wal_fsync_duration_seconds_sum",
		"etcd_disk_backend_commit_duration_seconds_count", "etcd_disk_backend_commit_duration_seconds_sum")
	if err != nil {
		return ds, err
	}
	ds.WALFsyncs = int64(m[0])
	ds.WALFsyncTime = seconds(m[1])
	ds.BackendCommits = int64(m[2])
	ds.BackendCommitTm = seconds(m[3])
	return ds, nil
}

// CPUTime returns the user and system CPU time member i's process has used
// (its process_cpu_seconds_total).
func (c *Cluster) CPUTime(ctx context.Context, i int) (time.Duration, error) {
	m, err := c.metrics(ctx, i, "process_cpu_seconds_total")
	if err != nil {
		return 0, err
	}
	return seconds(m[0]), nil
}

func seconds(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

// metrics reads the values of unlabelled series from member i's
// <client URL>/metrics, in the order of names; every one must be there.
func (c *Cluster) metrics(ctx context.Context, i int, names ...string) ([]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Endpoint(i)+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("member %d metrics: %w", i, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("member %d metrics: %s", i, resp.Status)
	}
	vals := make([]float64, len(names))
	seen := make([]bool, len(names))
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		j := slices.Index(names, name)
		if j < 0 {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			return nil, fmt.Errorf("member %d metrics: %s: %w", i, name, err)
		}
		vals[j], seen[j] = f, true
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("member %d metrics: %w", i, err)
	}
	if j := slices.Index(seen, false); j >= 0 {
		return nil, fmt.Errorf("member %d metrics: no series %s", i, names[j])
	}
	return vals, nil
}
