// Command psbench measures psbase side by side with the alternatives a Go
// user would pick instead (bbolt with its own lock timeout, the seeds' 10 ms
// polling lock, SQLite in WAL and rollback-journal mode, and one process
// holding bbolt open), and psbase itself on a 3-member etcd cluster on
// loopback (psbase-etcd), with real OS processes released together, next to
// the machine's fsync limit measured in the same run.
//
// Run it from the bench directory:
//
//	go run . -out results          # the full run, a few minutes on 2 cores
//	go run . -quick -out /tmp/q    # every scenario tiny, for CI
//
// It writes <out>/<date>.json, <out>/<date>.md and SVG charts, and exits
// non-zero if psbase gave a wrong counter total, lost a row or failed an
// operation. See README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

func main() {
	// This binary is also the etcd clusters' member processes (psbase-etcd):
	// as one, Main runs the member and never returns.
	etcdMain()
	if raw := os.Getenv(envWorker); raw != "" {
		if err := workerMain(raw); err != nil {
			fmt.Fprintln(os.Stderr, "psbench worker:", err)
			os.Exit(1)
		}
		return
	}
	os.Exit(benchMain())
}

// options are the command-line flags.
type options struct {
	out       string
	dataDir   string
	quick     bool
	rounds    int
	systems   []string
	scenarios []string
	keep      bool
	budget    time.Duration
}

func benchMain() int {
	var (
		o         options
		systems   = flag.String("systems", strings.Join(allSystems, ","), "comma-separated systems to run (psbase is always run: ratios need it)")
		scenarios = flag.String("scenarios", "write,counter,read,burst,size", "comma-separated scenario groups to run")
		withEtcd  = flag.Bool("etcd", true, "run the psbase-etcd systems (3-member clusters on loopback, started by the run); -etcd=false drops them from -systems")
	)
	flag.StringVar(&o.out, "out", "", "directory for the JSON, Markdown and SVG results (default: a new temporary directory; -out results updates the tracked ones)")
	flag.StringVar(&o.dataDir, "dir", "", "directory for the stores (default: a new temporary directory; it must be on the disk you want to measure)")
	flag.BoolVar(&o.quick, "quick", false, "run every scenario tiny (CI: proves the benchmark builds and runs; asserts no timing)")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds per cell; medians are reported (-quick: 1)")
	flag.BoolVar(&o.keep, "keep", false, "keep the data directory")
	flag.DurationVar(&o.budget, "budget", 3*time.Second, "time budget per cell and round: after it, workers start no new operation (cuts K for slow systems; 0 = none)")
	flag.Parse()
	if o.quick && !isFlagSet("rounds") {
		o.rounds = 1
	}
	if o.out == "" {
		dir, err := os.MkdirTemp("", "psbench-results-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "psbench:", err)
			os.Exit(1)
		}
		o.out = dir
	}
	o.systems = []string{sysPsbase}
	for _, s := range strings.Split(*systems, ",") {
		s = strings.TrimSpace(s)
		if s == "" || s == sysPsbase {
			continue
		}
		if !slices.Contains(allSystems, s) {
			fmt.Fprintf(os.Stderr, "psbench: unknown system %q (have %s)\n", s, strings.Join(allSystems, ", "))
			return 2
		}
		if isEtcd(s) && !*withEtcd {
			continue
		}
		o.systems = append(o.systems, s)
	}
	o.scenarios = strings.Split(*scenarios, ",")

	rep, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "psbench:", err)
		return 1
	}
	if len(rep.Problems) > 0 {
		fmt.Fprintln(os.Stderr, "psbench: psbase FAILED:")
		for _, p := range rep.Problems {
			fmt.Fprintln(os.Stderr, "  -", p)
		}
		return 1
	}
	return 0
}

func isFlagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// plan returns the cells to run, grouped by how their stores are prepared.
func plan(quick bool, scenarios []string) []group {
	want := func(s string) bool { return slices.Contains(scenarios, s) }
	var gs []group
	if quick {
		if want("write") {
			gs = append(gs, group{name: "write", fresh: true, cells: []cellSpec{
				{Scenario: scWrite, Op: opInsert, Procs: 1, Ops: 20},
				{Scenario: scWrite, Op: opInsert, Procs: 8, Ops: 5},
			}})
		}
		if want("counter") {
			gs = append(gs, group{name: "counter", fresh: true, records: 1, cells: []cellSpec{
				{Scenario: scCounter, Op: opIncr, Procs: 8, Ops: 5, Records: 1},
				{Scenario: scCounterTxn, Op: opIncrTxn, Procs: 8, Ops: 5, Records: 1, Only: []string{sysPsbase, sysPsbaseEtcd}},
			}})
		}
		if want("read") {
			gs = append(gs, group{name: "read", records: 1000, cells: []cellSpec{
				{Scenario: scRead, Op: opGet, Procs: 1, Ops: 100, Records: 1000},
				{Scenario: scRead, Op: opGet, Procs: 8, Ops: 20, Records: 1000},
				{Scenario: scMix, Op: opMix, Procs: 8, Ops: 20, Records: 1000},
			}})
		}
		if want("burst") {
			gs = append(gs, group{name: "burst", fresh: true, cells: []cellSpec{
				{Scenario: scBurst, Op: opOneShot, Procs: 20, Ops: 1},
			}})
		}
		if want("size") {
			gs = append(gs, sizeGroup(1000, 100, 20))
		}
		return gs
	}
	if want("write") {
		gs = append(gs, group{name: "write", fresh: true, cells: []cellSpec{
			{Scenario: scWrite, Op: opInsert, Procs: 1, Ops: 600},
			{Scenario: scWrite, Op: opInsert, Procs: 8, Ops: 150},
			{Scenario: scWrite, Op: opInsert, Procs: 50, Ops: 30},
			{Scenario: scWrite, Op: opInsert, Procs: 200, Ops: 8},
		}})
	}
	if want("counter") {
		gs = append(gs, group{name: "counter", fresh: true, records: 1, cells: []cellSpec{
			{Scenario: scCounter, Op: opIncr, Procs: 1, Ops: 300, Records: 1, Only: localAndEtcd},
			{Scenario: scCounter, Op: opIncr, Procs: 8, Ops: 100, Records: 1},
			{Scenario: scCounter, Op: opIncr, Procs: 50, Ops: 30, Records: 1},
			{Scenario: scCounterTxn, Op: opIncrTxn, Procs: 1, Ops: 300, Records: 1, Only: []string{sysPsbase, sysPsbaseEtcd}},
			{Scenario: scCounterTxn, Op: opIncrTxn, Procs: 8, Ops: 100, Records: 1, Only: []string{sysPsbase, sysPsbaseEtcd}},
			{Scenario: scCounterTxn, Op: opIncrTxn, Procs: 50, Ops: 30, Records: 1, Only: []string{sysPsbase, sysPsbaseEtcd}},
		}})
	}
	if want("read") {
		gs = append(gs, group{name: "read", records: 100_000, cells: []cellSpec{
			{Scenario: scRead, Op: opGet, Procs: 1, Ops: 5000, Records: 100_000},
			{Scenario: scRead, Op: opGet, Procs: 8, Ops: 1500, Records: 100_000},
			{Scenario: scRead, Op: opGet, Procs: 50, Ops: 300, Records: 100_000, Only: localAndEtcd},
			{Scenario: scMix, Op: opMix, Procs: 8, Ops: 400, Records: 100_000},
		}})
	}
	if want("burst") {
		gs = append(gs, group{name: "burst", fresh: true, cells: []cellSpec{
			{Scenario: scBurst, Op: opOneShot, Procs: 500, Ops: 1},
		}})
	}
	if want("size") {
		for _, n := range []int{1000, 100_000, 1_000_000} {
			gs = append(gs, sizeGroup(n, 2000, 300))
		}
	}
	return gs
}

func sizeGroup(records, gets, inserts int) group {
	return group{name: "size-" + humanCount(records), records: records, cells: []cellSpec{
		{Scenario: scSizeGet, Op: opGet, Procs: 1, Ops: gets, Records: records},
		{Scenario: scSizeIns, Op: opInsert, Procs: 1, Ops: inserts, Records: records},
	}}
}

// run executes the plan and writes the reports.
func run(o options) (*report, error) {
	started := time.Now()
	ctx := context.Background()
	dataDir := o.dataDir
	if dataDir == "" {
		d, err := os.MkdirTemp("", "psbench-")
		if err != nil {
			return nil, err
		}
		dataDir = d
	} else if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, err
	}
	if abs, err := filepath.Abs(dataDir); err == nil {
		dataDir = abs
	}
	if !o.keep {
		defer os.RemoveAll(dataDir)
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	stderr, err := os.Create(filepath.Join(dataDir, "workers.log"))
	if err != nil {
		return nil, err
	}
	defer stderr.Close()

	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%7.1fs  %s\n", time.Since(started).Seconds(), fmt.Sprintf(format, args...))
	}
	rep := &report{
		Command:   commandLine(),
		Quick:     o.quick,
		Rounds:    o.rounds,
		Systems:   o.systems,
		Machine:   collectMachine(dataDir),
		LoadStart: loadAverage(),
	}
	logf("machine: %s", rep.Machine)

	nSync := 300
	if o.quick {
		nSync = 50
	}
	lat, err := measureFsync(dataDir, nSync)
	if err != nil {
		return nil, fmt.Errorf("fsync measurement: %w", err)
	}
	rep.Fsync = fsyncInfo{Samples: len(lat), MedianUs: pct(lat, 0.5) / 1e3, P99Us: pct(lat, 0.99) / 1e3, Measured: "start of the run"}
	logf("fdatasync 4 KiB: median %.0f µs, p99 %.0f µs", rep.Fsync.MedianUs, rep.Fsync.P99Us)

	if o.quick && !isFlagSet("budget") {
		o.budget = 0 // tiny K: every operation runs, so the counter check is exact
	}
	rep.Budget = o.budget.String()
	clusters, err := startEtcd(o.systems, dataDir, logf)
	if err != nil {
		return nil, err
	}
	defer clusters.close()
	local, note := localWorkers(self, dataDir)
	rep.Workers = note
	logf("local workers: %s", note)
	r := &runner{dir: dataDir, self: self, local: local, stderr: stderr, logf: logf, budget: o.budget, etcd: clusters}
	for _, g := range plan(o.quick, o.scenarios) {
		built := map[string]string{}
		buildSec := map[string]float64{}
		if !g.fresh {
			for _, sys := range o.systems {
				if !slices.ContainsFunc(g.cells, func(cs cellSpec) bool { return runsIn(sys, cs) }) {
					continue
				}
				t := time.Now()
				path, _, _, err := r.prepare(ctx, sys, g)
				if err != nil {
					return nil, err
				}
				built[sys] = path
				buildSec[sys] = time.Since(t).Seconds()
				logf("built %s store for %s: %d records in %.1fs", sys, g.name, g.records, buildSec[sys])
			}
		}
		for _, cs := range g.cells {
			cr := cellReport{cellSpec: cs, Label: cs.Label(), Load: loadAverage()[0]}
			res := map[string]*systemResult{}
			var systems []string
			for _, sys := range o.systems {
				if runsIn(sys, cs) {
					systems = append(systems, sys)
					res[sys] = &systemResult{System: sys, BuildSec: buildSec[sys]}
				}
			}
			for round := 0; round < o.rounds; round++ {
				for i := range systems {
					sys := systems[(i+round)%len(systems)]
					path, counterStart, rowsStart := built[sys], int64(0), g.records
					if g.fresh {
						if path, counterStart, rowsStart, err = r.prepare(ctx, sys, g); err != nil {
							return nil, err
						}
					} else if cs.Op == opIncr || cs.Op == opInsert || cs.Op == opOneShot {
						// Prebuilt stores grow; count the rows before.
						var err error
						if counterStart, rowsStart, err = counterValue(ctx, sys, path, 0); err != nil {
							return nil, err
						}
					}
					rr, err := r.runRound(ctx, sys, cs, path, counterStart, rowsStart)
					if err != nil {
						rr.Check = "run failed: " + err.Error()
					}
					if g.fresh {
						removeStore(path)
					}
					logf("%-18s round %d  %-15s %9.0f ops/s  p50 %8.0f µs  p99 %9.0f µs  fail %d  skip %d  fair %d..%d  cpu %.2fs%s",
						cr.Label, round+1, sys, rr.OpsPerSec, rr.P50Us, rr.P99Us, rr.Failures, rr.Skipped, rr.FairMin, rr.FairMax, rr.CPUSec,
						prefixed("  CHECK: ", rr.Check)+prefixed("  err: ", firstOf(rr.Errors)))
					res[sys].Rounds = append(res[sys].Rounds, rr)
				}
			}
			for _, sys := range systems {
				cr.Results = append(cr.Results, *res[sys])
			}
			cr.summarize()
			rep.Cells = append(rep.Cells, cr)
		}
		for _, path := range built {
			removeStore(path)
		}
	}

	if lat, err := measureFsync(dataDir, nSync); err == nil {
		rep.Fsync.MedianUs2 = pct(lat, 0.5) / 1e3
		rep.Fsync.Measured = "start and end of the run"
	}
	rep.Fsync.Limit = 1e6 / (2 * rep.Fsync.MedianUs)
	rep.DurationSec = time.Since(started).Seconds()
	rep.LoadEnd = loadAverage()
	rep.evaluate()
	if err := rep.write(o.out); err != nil {
		return nil, err
	}
	logf("wrote %s", filepath.Join(o.out, rep.baseName()+".{json,md}"))
	return rep, nil
}

// commandLine is the command that reproduces this run, from the repo root.
func commandLine() string {
	args := []string{"cd bench && go run ."}
	for _, a := range os.Args[1:] {
		if strings.ContainsAny(a, " \t'\"") {
			a = "'" + a + "'"
		}
		args = append(args, a)
	}
	return strings.Join(args, " ")
}

func prefixed(p, s string) string {
	if s == "" {
		return ""
	}
	return p + s
}

func firstOf(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}
