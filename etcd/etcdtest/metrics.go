package etcdtest

// metrics.go: what a member's disk did — its WAL fsyncs and backend commits,
// read from the Prometheus text the member serves at <client URL>/metrics.
//
// May touch: nothing (an HTTP GET to a member of this cluster).

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
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
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Endpoint(i)+"/metrics", nil)
	if err != nil {
		return ds, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ds, fmt.Errorf("member %d metrics: %w", i, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ds, fmt.Errorf("member %d metrics: %s", i, resp.Status)
	}
	seen := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		var count *int64
		var sum *time.Duration
		switch name {
		case "etcd_disk_wal_fsync_duration_seconds_count":
			count = &ds.WALFsyncs
		case "etcd_disk_wal_fsync_duration_seconds_sum":
			sum = &ds.WALFsyncTime
		case "etcd_disk_backend_commit_duration_seconds_count":
			count = &ds.BackendCommits
		case "etcd_disk_backend_commit_duration_seconds_sum":
			sum = &ds.BackendCommitTm
		default:
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			return ds, fmt.Errorf("member %d metrics: %s: %w", i, name, err)
		}
		if count != nil {
			*count = int64(f)
		} else {
			*sum = time.Duration(f * float64(time.Second))
		}
		seen++
	}
	if err := sc.Err(); err != nil {
		return ds, fmt.Errorf("member %d metrics: %w", i, err)
	}
	if seen != 4 {
		return ds, fmt.Errorf("member %d metrics: %d of the 4 disk series found", i, seen)
	}
	return ds, nil
}
