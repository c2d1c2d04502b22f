package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Scenarios.
const (
	scWrite   = "write"   // write storm
	scCounter = "counter" // counter storm
	// counter storm as a read-modify-write Txn (psbase's Store.Add is one
	// operation that group commit can combine; on etcd both are a Txn)
	scCounterTxn = "counter-txn"
	scRead       = "read"  // read storm
	scMix        = "mix"   // 90/10 read/write mix
	scBurst      = "burst" // one-shot burst
	scSizeGet    = "size-get"
	scSizeIns    = "size-insert"
)

// cellSpec is one cell of the table: a scenario at one process count.
type cellSpec struct {
	Scenario string   `json:"scenario"`
	Op       string   `json:"op"`
	Procs    int      `json:"procs"`             // processes released together
	Ops      int      `json:"ops_per_proc"`      // operations per process (K)
	Records  int      `json:"records"`           // records in the store before the run
	Only     []string `json:"systems,omitempty"` // the systems this cell runs (none: every one, see runsIn)
}

// Label names the cell in reports.
func (c cellSpec) Label() string {
	switch c.Scenario {
	case scSizeGet, scSizeIns:
		return fmt.Sprintf("%s @%s", c.Scenario, humanCount(c.Records))
	case scBurst:
		return fmt.Sprintf("burst N=%d", c.Procs)
	}
	return fmt.Sprintf("%s N=%d", c.Scenario, c.Procs)
}

// group is a set of cells sharing how their stores are prepared.
type group struct {
	name    string
	records int  // records the store holds
	fresh   bool // a fresh store per round (writes), else one built for the group
	cells   []cellSpec
}

// roundResult is one system's figures in one round of one cell.
type roundResult struct {
	Ops       int       `json:"ops"`
	Failures  int       `json:"failures"`
	Skipped   int       `json:"skipped,omitempty"` // operations not started: the cell's time budget ran out
	Over5s    int       `json:"over_5s,omitempty"` // successful operations that took over 5 s (Python sqlite3's default timeout, seeds/002_*)
	WallSec   float64   `json:"wall_s"`
	OpsPerSec float64   `json:"ops_per_s"`
	P50Us     float64   `json:"p50_us"`
	P99Us     float64   `json:"p99_us"`
	MaxUs     float64   `json:"max_us"`
	FairMin   int       `json:"fair_min"` // fewest ops a process finished by the time the first one finished all
	FairMax   int       `json:"fair_max"`
	Jain      float64   `json:"jain"` // Jain's fairness index of those counts
	CPUSec    float64   `json:"cpu_s"`
	Errors    []string  `json:"errors,omitempty"`
	Check     string    `json:"check,omitempty"` // why the result is wrong (counter, row count); empty when right
	Final     int64     `json:"counter_final,omitempty"`
	Want      int64     `json:"counter_want,omitempty"`
	Etcd      *etcdDisk `json:"etcd_disk,omitempty"` // the cluster's disk during the round (etcd systems)
	// Group commit (psbase): the batches the workers' combiners committed
	// and the operations in them, every process summed; MeanBatch =
	// BatchedOps / Batches.
	Batches    uint64  `json:"batches,omitempty"`
	BatchedOps uint64  `json:"batched_ops,omitempty"`
	MeanBatch  float64 `json:"mean_batch,omitempty"`
}

// runner runs cells.
type runner struct {
	dir    string // data directory
	self   string // this executable (the etcd systems' workers and members)
	local  string // the local systems' workers' executable (workers.go)
	stderr *os.File
	seed   uint64
	budget time.Duration // per cell and round: workers stop starting operations after it
	etcd   etcdClusters  // the clusters of the etcd systems
	logf   func(format string, args ...any)
}

// runRound runs one system on one cell once: prepares nothing (the caller
// built the store at path), releases the workers together and measures.
func (r *runner) runRound(ctx context.Context, sys string, cs cellSpec, path string, counterStart int64, rowsStart int) (roundResult, error) {
	var rr roundResult
	resDir, err := os.MkdirTemp(r.dir, "res-")
	if err != nil {
		return rr, err
	}
	defer os.RemoveAll(resDir)

	procs, lanes := cs.Procs, 1
	if heldOnce(sys) {
		procs, lanes = 1, cs.Procs
	}
	// Start from a clean page cache write-back: the previous cell's dirty
	// pages must not be flushed on this cell's fsyncs.
	unix.Sync()
	time.Sleep(50 * time.Millisecond)
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return rr, err
	}
	defer readyR.Close()
	relR, relW, err := os.Pipe()
	if err != nil {
		readyW.Close()
		return rr, err
	}
	defer relW.Close()

	r.seed++
	cmds := make([]*exec.Cmd, 0, procs)
	killAll := func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
		}
	}
	for i := 0; i < procs; i++ {
		wpath := path
		if isEtcd(sys) {
			wpath = preferEndpoint(path, i)
		}
		spec := workerSpec{
			System: sys, Op: cs.Op, Path: wpath, Lanes: lanes, Ops: cs.Ops,
			Records: cs.Records, Counter: 1, Seed: r.seed*1000 + uint64(i), Budget: int64(r.budget),
			Result: filepath.Join(resDir, fmt.Sprintf("w%d.json", i)),
		}
		raw, _ := json.Marshal(spec)
		cmd := exec.Command(r.workerBinary(sys))
		cmd.Env = append(os.Environ(), envWorker+"="+string(raw))
		cmd.ExtraFiles = []*os.File{readyW, relR}
		cmd.Stdout, cmd.Stderr = r.stderr, r.stderr
		if err := cmd.Start(); err != nil {
			killAll()
			readyW.Close()
			relR.Close()
			for _, c := range cmds {
				_ = c.Wait()
			}
			return rr, fmt.Errorf("start worker %d: %w", i, err)
		}
		cmds = append(cmds, cmd)
	}
	readyW.Close()
	relR.Close()

	// Wait for every worker in the background.
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		lastExit int64
		cpu      time.Duration
		crashed  []string
	)
	for i, c := range cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.Wait()
			now := monoNow()
			mu.Lock()
			defer mu.Unlock()
			lastExit = max(lastExit, now)
			if ru, ok := c.ProcessState.SysUsage().(*syscall.Rusage); ok {
				cpu += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			}
			if err != nil && len(crashed) < 3 {
				crashed = append(crashed, fmt.Sprintf("worker %d: %v", i, err))
			}
		}()
	}

	// Barrier: every worker ready, then release them all at once.
	_ = readyR.SetReadDeadline(time.Now().Add(3 * time.Minute))
	buf := make([]byte, procs)
	if _, err := io.ReadFull(readyR, buf); err != nil {
		killAll()
		wg.Wait()
		return rr, fmt.Errorf("waiting for %d workers to be ready: %w (%v)", procs, err, crashed)
	}
	cluster := r.etcd[sys]
	var diskBefore memberCounters
	if cluster != nil {
		if diskBefore, err = readCounters(ctx, cluster); err != nil {
			killAll()
			wg.Wait()
			return rr, fmt.Errorf("etcd disk counters: %w", err)
		}
	}
	t0 := monoNow()
	relW.Close()

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Minute):
		killAll()
		<-done
		return rr, fmt.Errorf("workers did not finish in 15 minutes")
	}

	// Collect.
	var (
		lats    []int64
		lastEnd int64
		lanesR  []laneResult
		errSeen = map[string]bool{}
	)
	for i := range cmds {
		data, err := os.ReadFile(filepath.Join(resDir, fmt.Sprintf("w%d.json", i)))
		var wr workerResult
		if err == nil {
			err = json.Unmarshal(data, &wr)
		}
		if err != nil {
			// The worker died without a result: all its operations failed.
			rr.Failures += lanes * cs.Ops
			msg := fmt.Sprintf("worker %d left no result: %v", i, err)
			if !errSeen[msg] && len(rr.Errors) < 5 {
				errSeen[msg] = true
				rr.Errors = append(rr.Errors, msg)
			}
			for range lanes {
				lanesR = append(lanesR, laneResult{Fail: cs.Ops})
			}
			continue
		}
		for _, e := range append(wr.Errors, wr.SetupErr) {
			if e != "" && !errSeen[e] && len(rr.Errors) < 5 {
				errSeen[e] = true
				rr.Errors = append(rr.Errors, e)
			}
		}
		rr.Batches += wr.Batches
		rr.BatchedOps += wr.BatchedOps
		for _, l := range wr.Lanes {
			rr.Ops += len(l.Lat)
			rr.Failures += l.Fail
			rr.Skipped += l.Skip
			lats = append(lats, l.Lat...)
			if len(l.End) > 0 {
				lastEnd = max(lastEnd, l.End[len(l.End)-1])
			}
			lanesR = append(lanesR, l)
		}
	}
	if len(crashed) > 0 {
		rr.Errors = append(rr.Errors, crashed...)
	}
	rr.CPUSec = cpu.Seconds()
	if cluster != nil {
		if after, err := readCounters(ctx, cluster); err == nil {
			rr.Etcd = newEtcdDisk(diskBefore, after, rr.Ops)
		} else {
			rr.Errors = append(rr.Errors, "etcd disk counters: "+err.Error())
		}
	}
	end := lastEnd
	if cs.Op == opOneShot {
		end = lastExit // the burst ends when the last process has exited
	}
	if end > t0 {
		rr.WallSec = float64(end-t0) / 1e9
		rr.OpsPerSec = float64(rr.Ops) / rr.WallSec
	}
	if rr.Batches > 0 {
		rr.MeanBatch = float64(rr.BatchedOps) / float64(rr.Batches)
	}
	slices.Sort(lats)
	if i, _ := slices.BinarySearch(lats, int64(5*time.Second)+1); i < len(lats) {
		rr.Over5s = len(lats) - i
	}
	rr.P50Us = pct(lats, 0.50) / 1e3
	rr.P99Us = pct(lats, 0.99) / 1e3
	if len(lats) > 0 {
		rr.MaxUs = float64(lats[len(lats)-1]) / 1e3
	}
	capAt := int64(-1)
	if r.budget > 0 {
		capAt = t0 + int64(r.budget)
	}
	rr.FairMin, rr.FairMax, rr.Jain = fairness(lanesR, cs.Ops, capAt)

	// Correctness.
	switch cs.Op {
	case opIncr, opIncrTxn:
		final, _, err := counterValue(ctx, sys, path, 1)
		// N·K, less the increments the time budget left unstarted.
		rr.Final, rr.Want = final-counterStart, int64(cs.Procs*cs.Ops-rr.Skipped)
		switch {
		case err != nil:
			rr.Check = "cannot read the counter: " + err.Error()
		case rr.Final != rr.Want:
			rr.Check = fmt.Sprintf("counter total %d, want %d (%d increments failed, %d lost)",
				rr.Final, rr.Want, rr.Failures, int64(rr.Ops)-rr.Final)
		}
	case opInsert, opOneShot:
		_, rows, err := counterValue(ctx, sys, path, 0)
		switch {
		case err != nil:
			rr.Check = "cannot count the rows: " + err.Error()
		case rows != rowsStart+rr.Ops:
			rr.Check = fmt.Sprintf("%d rows after %d successful inserts into %d", rows, rr.Ops, rowsStart)
		case rr.Failures > 0 && cs.Op == opInsert:
			rr.Check = fmt.Sprintf("%d of %d inserts failed", rr.Failures, cs.Procs*cs.Ops)
		}
	}
	if rr.Check == "" && rr.Ops == 0 {
		rr.Check = "no operation succeeded"
	}
	return rr, nil
}

// fairness counts, for every lane, the operations it finished by the time
// the first lane finished all of its ops (or the time budget ran out, capAt,
// if earlier): the fewest, the most, and Jain's index (1 = perfectly even,
// 1/n = one lane got everything).
func fairness(lanes []laneResult, ops int, capAt int64) (lo, hi int, jain float64) {
	if len(lanes) == 0 {
		return 0, 0, 0
	}
	cut := capAt
	for _, l := range lanes {
		if len(l.End) == ops && ops > 0 {
			if e := l.End[len(l.End)-1]; cut < 0 || e < cut {
				cut = e
			}
		}
	}
	lo = -1
	counts := make([]float64, 0, len(lanes))
	for _, l := range lanes {
		n := len(l.End)
		if cut >= 0 {
			n, _ = slices.BinarySearch(l.End, cut+1)
		}
		if lo < 0 || n < lo {
			lo = n
		}
		hi = max(hi, n)
		counts = append(counts, float64(n))
	}
	return lo, hi, jainIndex(counts)
}

// prepare builds the store of sys for a cell and returns its path and the
// counter's and row count's starting values.
func (r *runner) prepare(ctx context.Context, sys string, g group) (path string, counterStart int64, rows int, err error) {
	path = storePath(r.dir, sys, g.name)
	if isEtcd(sys) {
		path = r.etcd.storeURL(sys, g.name)
	}
	records := g.records
	if err := buildStore(ctx, sys, path, records); err != nil {
		return "", 0, 0, fmt.Errorf("build %s store with %d records: %w", sys, records, err)
	}
	if records > 0 {
		counterStart = 1 // record 1 has n = 1
	}
	return path, counterStart, records, nil
}

// humanCount writes 1000 as 1k and 1000000 as 1M.
func humanCount(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}
