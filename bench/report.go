package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// report is everything one run measured; it is written as JSON and Markdown.
type report struct {
	Command     string         `json:"command"`
	Quick       bool           `json:"quick"`
	Rounds      int            `json:"rounds"`
	Budget      string         `json:"budget"` // time budget per cell and round`
	Systems     []string       `json:"systems"`
	Machine     machineInfo    `json:"machine"`
	Fsync       fsyncInfo      `json:"fsync"`
	LoadStart   [3]float64     `json:"load_start"`    // load average (1, 5, 15 min) when the run started
	LoadEnd     [3]float64     `json:"load_end"`      // and when it ended
	Workers     string         `json:"local_workers"` // the binary the local systems' workers ran (workers.go)
	Cells       []cellReport   `json:"cells"`
	Targets     []targetResult `json:"targets"`
	Problems    []string       `json:"problems,omitempty"` // psbase correctness failures: non-zero exit
	DurationSec float64        `json:"duration_s"`
}

// cellReport is one scenario at one size, every system, every round.
type cellReport struct {
	cellSpec
	Label   string         `json:"label"`
	Load    float64        `json:"load_1m"` // 1-minute load average when the cell started
	Results []systemResult `json:"results"`
}

// systemResult is one system in one cell.
type systemResult struct {
	System        string        `json:"system"`
	BuildSec      float64       `json:"build_s,omitempty"` // building the prebuilt store
	Rounds        []roundResult `json:"rounds"`
	Median        roundResult   `json:"median"`         // the median of every figure over the rounds
	TotalFailures int           `json:"total_failures"` // over all rounds
	Speedup       float64       `json:"psbase_speedup"` // median over rounds of psbase ops/s ÷ this system's ops/s, same round
	P99Ratio      float64       `json:"p99_vs_psbase"`  // median over rounds of this system's p99 ÷ psbase's p99, same round
}

// targetResult is one of the targets, checked against this run.
type targetResult struct {
	Name   string `json:"name"`
	Want   string `json:"want"`
	Got    string `json:"got"`
	Status string `json:"status"` // met, missed, info
}

// summarize computes medians and the pairwise (same-round) ratios.
func (c *cellReport) summarize() {
	var base *systemResult
	for i := range c.Results {
		if c.Results[i].System == sysPsbase {
			base = &c.Results[i]
		}
	}
	for i := range c.Results {
		s := &c.Results[i]
		f := func(get func(roundResult) float64) float64 {
			var xs []float64
			for _, r := range s.Rounds {
				xs = append(xs, get(r))
			}
			return median(xs)
		}
		m := roundResult{
			Ops:       int(f(func(r roundResult) float64 { return float64(r.Ops) })),
			Failures:  int(f(func(r roundResult) float64 { return float64(r.Failures) })),
			Skipped:   int(f(func(r roundResult) float64 { return float64(r.Skipped) })),
			Over5s:    int(f(func(r roundResult) float64 { return float64(r.Over5s) })),
			WallSec:   f(func(r roundResult) float64 { return r.WallSec }),
			OpsPerSec: f(func(r roundResult) float64 { return r.OpsPerSec }),
			P50Us:     f(func(r roundResult) float64 { return r.P50Us }),
			P99Us:     f(func(r roundResult) float64 { return r.P99Us }),
			MaxUs:     f(func(r roundResult) float64 { return r.MaxUs }),
			FairMin:   int(f(func(r roundResult) float64 { return float64(r.FairMin) })),
			FairMax:   int(f(func(r roundResult) float64 { return float64(r.FairMax) })),
			Jain:      f(func(r roundResult) float64 { return r.Jain }),
			CPUSec:    f(func(r roundResult) float64 { return r.CPUSec }),
		}
		var checks []string
		for i, r := range s.Rounds {
			s.TotalFailures += r.Failures
			if r.Check != "" {
				checks = append(checks, fmt.Sprintf("round %d: %s", i+1, r.Check))
			}
			for _, e := range r.Errors {
				if !slices.Contains(m.Errors, e) && len(m.Errors) < 3 {
					m.Errors = append(m.Errors, e)
				}
			}
			m.Final, m.Want = r.Final, r.Want
		}
		m.Check = strings.Join(checks, "; ")
		m.Etcd = medianEtcdDisk(s.Rounds)
		m.MeanBatch = f(func(r roundResult) float64 { return r.MeanBatch })
		s.Median = m
		if base == nil {
			continue
		}
		var sp, pr []float64
		for r := range min(len(s.Rounds), len(base.Rounds)) {
			sp = append(sp, base.Rounds[r].OpsPerSec/s.Rounds[r].OpsPerSec)
			pr = append(pr, s.Rounds[r].P99Us/base.Rounds[r].P99Us)
		}
		s.Speedup, s.P99Ratio = median(sp), median(pr)
	}
}

// find returns the result of sys in the cell labelled label.
func (rep *report) find(label, sys string) *systemResult {
	for i := range rep.Cells {
		if rep.Cells[i].Label != label {
			continue
		}
		for j := range rep.Cells[i].Results {
			if rep.Cells[i].Results[j].System == sys {
				return &rep.Cells[i].Results[j]
			}
		}
	}
	return nil
}

// evaluate checks the targets and collects psbase's correctness
// problems (which make the command fail).
func (rep *report) evaluate() {
	for _, c := range rep.Cells {
		for _, s := range c.Results {
			if s.System != sysPsbase && !isEtcd(s.System) {
				continue // psbase on etcd is psbase too
			}
			if s.Median.Check != "" {
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s: %s: %s", c.Label, s.System, s.Median.Check))
			} else if s.TotalFailures > 0 {
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s: %s: %d failed operations (%s)", c.Label, s.System, s.TotalFailures, firstOf(s.Median.Errors)))
			}
		}
	}
	add := func(name, want, got string, ok bool) {
		st := "missed"
		if ok {
			st = "met"
		}
		rep.Targets = append(rep.Targets, targetResult{Name: name, Want: want, Got: got, Status: st})
	}
	info := func(name, got string) {
		rep.Targets = append(rep.Targets, targetResult{Name: name, Got: got, Status: "info"})
	}
	// The write storm at the largest N ≤ 50 run (50 in the full run).
	wn := 0
	for _, c := range rep.Cells {
		if c.Scenario == scWrite && c.Procs <= 50 {
			wn = max(wn, c.Procs)
		}
	}
	label := fmt.Sprintf("%s N=%d", scWrite, wn)
	if ps := rep.find(label, sysPsbase); ps != nil {
		for _, t := range []struct {
			sys     string
			speedup float64
		}{{sysBoltTimeout, 3}, {sysSeedPolling, 2}} {
			if s := rep.find(label, t.sys); s != nil {
				add(fmt.Sprintf("%s: psbase vs %s throughput", label, t.sys), fmt.Sprintf("≥ %.0f×", t.speedup),
					fmt.Sprintf("%.2f× (%.0f vs %.0f ops/s)", s.Speedup, ps.Median.OpsPerSec, s.Median.OpsPerSec), s.Speedup >= t.speedup)
				add(fmt.Sprintf("%s: psbase p99 vs %s p99", label, t.sys), "≤ 1/5 (their p99 ≥ 5× psbase's)",
					fmt.Sprintf("theirs %.2f× psbase's (%.1f vs %.1f ms)", s.P99Ratio, s.Median.P99Us/1e3, ps.Median.P99Us/1e3), s.P99Ratio >= 5)
			}
		}
		if s := rep.find(label, sysSQLiteWAL); s != nil {
			add(fmt.Sprintf("%s: psbase vs sqlite-wal throughput", label), "≥ 1×",
				fmt.Sprintf("%.2f× (%.0f vs %.0f ops/s)", s.Speedup, ps.Median.OpsPerSec, s.Median.OpsPerSec), s.Speedup >= 1)
		}
		if one := rep.find(scWrite+" N=1", sysPsbase); one != nil && wn > 1 {
			info(fmt.Sprintf("contention efficiency: psbase write N=%d / N=1", wn),
				fmt.Sprintf("%.2f (%.0f / %.0f ops/s; fsync limit %.0f commits/s)", ps.Median.OpsPerSec/one.Median.OpsPerSec,
					ps.Median.OpsPerSec, one.Median.OpsPerSec, rep.Fsync.Limit))
		}
	}
	for _, c := range rep.Cells {
		if c.Scenario != scBurst {
			continue
		}
		for _, s := range c.Results {
			got := fmt.Sprintf("%d failures (median of rounds; %d in all rounds), wall %.2f s, %d inserts took > 5 s", s.Median.Failures, s.TotalFailures, s.Median.WallSec, s.Median.Over5s)
			if s.System == sysPsbase {
				add(fmt.Sprintf("%s: psbase failures", c.Label), "0", got, s.TotalFailures == 0 && s.Median.Check == "")
			} else {
				info(fmt.Sprintf("%s: %s", c.Label, s.System), got+prefixed("; ", firstOf(s.Median.Errors)))
			}
		}
	}
	r1, r8 := rep.find(scRead+" N=1", sysPsbase), rep.find(scRead+" N=8", sysPsbase)
	if r1 != nil && r8 != nil {
		add("reads: psbase 8 reader processes vs 1", "more total reads/s",
			fmt.Sprintf("%.0f vs %.0f reads/s (%.2f×)", r8.Median.OpsPerSec, r1.Median.OpsPerSec, r8.Median.OpsPerSec/r1.Median.OpsPerSec),
			r8.Median.OpsPerSec > r1.Median.OpsPerSec)
	}
	for _, c := range rep.Cells {
		if c.Scenario != scCounter {
			continue
		}
		var bad []string
		for _, s := range c.Results {
			if s.Median.Check != "" {
				bad = append(bad, s.System+" ("+s.Median.Check+")")
			}
		}
		got := "every system: final == N·K"
		if len(bad) > 0 {
			got = "WRONG: " + strings.Join(bad, "; ")
		}
		ps := rep.find(c.Label, sysPsbase)
		add(c.Label+": counter correct", "final == N·K for every system", got, ps != nil && ps.Median.Check == "")
	}
}

// baseName is the file name stem: the date, and -quick for quick runs.
func (rep *report) baseName() string {
	d := rep.Machine.Date[:10]
	if rep.Quick {
		d += "-quick"
	}
	return d
}

// write writes <out>/<date>.json, .md and the charts.
func (rep *report) write(out string) error {
	base := filepath.Join(out, rep.baseName())
	charts, err := rep.charts(base)
	if err != nil {
		return fmt.Errorf("charts: %w", err)
	}
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(base+".json", append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(base+".md", []byte(rep.markdown(charts)), 0o644)
}

func (rep *report) markdown(charts []string) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	title := "psbase benchmark"
	if rep.Quick {
		title += " (quick mode: tiny, not for conclusions)"
	}
	p("# %s, %s\n\n", title, rep.Machine.Date[:10])
	p("* command (from the repository root): `%s`\n", rep.Command)
	p("* machine: %d cores (%s), %d GiB RAM, kernel `%s`\n", rep.Machine.Cores, rep.Machine.CPU, rep.Machine.MemoryGiB, rep.Machine.Kernel)
	p("* data dir: `%s` on %s (`%s` mounted at `%s`)\n", rep.Machine.DataDir, rep.Machine.FileSystem, rep.Machine.Device, rep.Machine.Mount)
	p("* %s, %s, %d round(s) per cell, time budget per cell and round %s, run took %s\n", rep.Machine.GoVersion, rep.Machine.Date, rep.Rounds, rep.Budget, (time.Duration(rep.DurationSec) * time.Second).String())
	p("* load average (1 / 5 / 15 min): %.2f / %.2f / %.2f at the start, %.2f / %.2f / %.2f at the end (the run's own processes included; each cell gives its own)\n",
		rep.LoadStart[0], rep.LoadStart[1], rep.LoadStart[2], rep.LoadEnd[0], rep.LoadEnd[1], rep.LoadEnd[2])
	if rep.Workers != "" {
		p("* local systems' worker processes: %s\n", rep.Workers)
	}
	p("* **fsync limit**: fdatasync of 4 KiB median %.0f µs (p99 %.0f µs, %d samples; %.0f µs at the end of the run) → a bbolt commit (two syncs) can do at most **%.0f commits/s** without batching\n\n",
		rep.Fsync.MedianUs, rep.Fsync.P99Us, rep.Fsync.Samples, rep.Fsync.MedianUs2, rep.Fsync.Limit)
	if len(rep.Problems) > 0 {
		p("**psbase FAILED:**\n\n")
		for _, pr := range rep.Problems {
			p("* %s\n", pr)
		}
		p("\n")
	}
	p("## Targets\n\n| target | want | got | status |\n|---|---|---|---|\n")
	for _, t := range rep.Targets {
		status := t.Status
		if status != "info" {
			status = "**" + status + "**"
		}
		p("| %s | %s | %s | %s |\n", t.Name, t.Want, t.Got, status)
	}
	p("\n## Results\n\nMedians over rounds. *psbase speedup* = psbase ops/s ÷ the system's ops/s and *p99 ratio* = the system's p99 ÷ psbase's p99, both computed within each round and then the median taken: above 1 means psbase is better. *fair* = fewest..most operations a process had finished when the first process finished all of its K (Jain's index in brackets; 1 = even). *CPU* = user+system seconds of all worker processes. A *check* is a wrong result (counter total ≠ N·K, missing rows): that system failed the cell.\n\n")
	for _, c := range rep.Cells {
		p("### %s\n\n", c.Label)
		switch c.Scenario {
		case scBurst:
			p("%d processes, each: start, wait at the barrier, open the store, insert one row, exit. Wall = release → last process exited.\n\n", c.Procs)
		case scSizeGet, scSizeIns:
			p("1 process × %d operations on a store of %d records.\n\n", c.Ops, c.Records)
		default:
			p("%d process(es) × K = %d operations", c.Procs, c.Ops)
			if c.Records > 1 {
				p(" on a %d-record store", c.Records)
			}
			p(".\n\n")
		}
		p("Load average (1 min) when the cell started: %.2f.\n\n", c.Load)
		p("| system | ops/s | psbase speedup | p50 ms | p99 ms | max ms | p99 ratio | failures | fair | CPU s | check / errors |\n")
		p("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|\n")
		for _, s := range c.Results {
			m := s.Median
			note := m.Check
			if note == "" && len(m.Errors) > 0 {
				note = "errors: " + m.Errors[0]
			}
			if m.Skipped > 0 {
				note = strings.TrimSuffix(fmt.Sprintf("budget: %d of %d ops done; %s", m.Ops, c.Procs*c.Ops, note), "; ")
			}
			note = strings.ReplaceAll(note, "|", "/")
			if len(note) > 160 {
				note = note[:157] + "..."
			}
			fair := fmt.Sprintf("%d..%d (%.2f)", m.FairMin, m.FairMax, m.Jain)
			if c.Ops == 1 {
				fair = "–" // one operation per process: nothing to share
			}
			p("| %s | %.0f | %s | %.2f | %.2f | %.2f | %s | %d | %s | %.2f | %s |\n",
				s.System, m.OpsPerSec, ratio(s.Speedup), m.P50Us/1e3, m.P99Us/1e3, m.MaxUs/1e3, ratio(s.P99Ratio),
				s.TotalFailures, fair, m.CPUSec, note)
		}
		for _, s := range c.Results {
			if s.Median.MeanBatch > 0 {
				p("\n%s's group commit: mean batch %.1f operations per commit (median of rounds; per round:", s.System, s.Median.MeanBatch)
				for _, r := range s.Rounds {
					p(" %.1f", r.MeanBatch)
				}
				p(").\n")
			}
		}
		p("\n")
	}
	b.WriteString(rep.etcdMarkdown())
	if len(charts) > 0 {
		p("## Charts\n\n")
		for _, ch := range charts {
			p("![%s](%s)\n\n", strings.TrimSuffix(ch, ".svg"), ch)
		}
	}
	return b.String()
}

func ratio(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) || x == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", x)
}
