package main

// storm.go: "psbase storm", the parallel-command tester: its flags, its
// text report and its machine-readable tables (--json, --csv).
//
// May touch: nothing itself; the commands it starts touch what they touch.

import (
	"encoding/csv"
	"fmt"
	"io"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/psbase/psbase/storm"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
)

// maybeLaunch lets the storm package turn this process into a launcher: a
// storm re-executes psbase, which waits at the barrier and then exec(2)s the
// target command.
func maybeLaunch() { storm.MaybeLaunch() }

// stormCmdSpec is one --cmd: a shell command and its own count (0: use -n).
type stormCmdSpec struct {
	count int
	argv  []string
	label string
}

var countPrefix = regexp.MustCompile(`^([0-9]+):`)

// parseStormCmd parses --cmd '[COUNT:]SHELL COMMAND'.
func parseStormCmd(s string) (stormCmdSpec, error) {
	spec := stormCmdSpec{}
	if m := countPrefix.FindStringSubmatch(s); m != nil {
		n, err := strconv.Atoi(m[1])
		if err != nil || n <= 0 {
			return spec, usagef("bad --cmd %q: COUNT must be a positive integer", s)
		}
		spec.count = n
		s = s[len(m[0]):]
	}
	if strings.TrimSpace(s) == "" {
		return spec, usagef("bad --cmd: empty command")
	}
	spec.argv = []string{"/bin/sh", "-c", s}
	spec.label = s
	return spec, nil
}

// parseRamp parses --ramp 50,100,200.
func parseRamp(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || n <= 0 {
			return nil, usagef("bad --ramp %q: want positive sizes like 50,100,200", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// stormStats summarizes the processes of one storm size.
type stormStats struct {
	size, procs, failed, timedOut int
	wall, skew, p50, p99, max     time.Duration
}

func summarize(size int, res *storm.CommandResult) stormStats {
	st := stormStats{size: size}
	var durs []time.Duration
	for _, l := range res.Loops {
		st.wall += l.Wall
		st.skew = max(st.skew, l.Skew)
		for _, p := range l.Procs {
			st.procs++
			if p.Failed() {
				st.failed++
			}
			if p.TimedOut {
				st.timedOut++
			}
			durs = append(durs, p.Duration)
		}
	}
	st.p50, st.p99, st.max = storm.Percentile(durs, 0.50), storm.Percentile(durs, 0.99), storm.Percentile(durs, 1)
	return st
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64) + "ms"
}

// firstLines returns the first n non-empty lines of s, indented.
func firstLines(s string, n int) []string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		out = append(out, line)
		if len(out) == n {
			break
		}
	}
	return out
}

func (a *app) stormCmd() *cobra.Command {
	var (
		n, loops, lines int
		timeout         time.Duration
		cmds            []string
		ramp            string
		verbose         bool
	)
	c := &cobra.Command{
		Use:   "storm [-n N] [--loops L] [--timeout T] [--ramp SIZES] [--cmd '[COUNT:]SHELL CMD']... [-- COMMAND ARGS...]",
		Short: "Start N copies of commands at the same instant and report every failure",
		Long: `Start N copies of a command at the same instant, wait for all of them and
report: exit codes, durations, the first lines of stderr of failed copies.
Exits with code 10 if any copy failed (non-zero exit, killed, or still
running after --timeout), 0 if all succeeded.

The barrier: every copy starts as a psbase launcher process that signals
ready, and only when all are ready are they released together; each then
exec(2)s its command (same pid). The skew is the spread of the release
instants (CLOCK_MONOTONIC) as the launchers saw them.

  -- COMMAND ARGS...       run COMMAND directly (no shell), -n times
  --cmd '[COUNT:]CMD'      run CMD with /bin/sh -c, COUNT times (default -n);
                           repeat --cmd to run different commands at once
  {i}                      in any argument or CMD, replaced by the task number
  --ramp 50,100,200        run the storm at each size in turn (the size replaces
                           -n; --cmd counts are kept) and print a table of
                           size -> failures, wall time, p50/p99 durations
  --loops L                repeat each storm L times

Failed copies are always listed; -v lists every copy. Percentiles are by
nearest rank: p99 is the smallest duration that 99% of the copies did not
exceed (with fewer than 100 copies, the maximum).

--json and --csv print every table, machine-readable, after the storm: each
row's "row" column names its table: "copy" (size, loop, task, command, pid,
exit, duration_ms, timed_out, error, stderr), "command" (per command and
loop: copies, ok, failed, exit_codes, skew_ms, wall_ms, p50_ms, p99_ms,
max_ms) and with --ramp "ramp" (per size). CSV writes each table with its
own header line, separated by an empty line (--no-header drops them).

A progress bar shows on a terminal, plain progress lines on stderr
otherwise (none with --quiet). Not available on Windows.`,
		Example: `  # 50 concurrent increments must end with the exact count
  psbase storm -n 50 -- psbase incr counters.db 1 hits
  # two different commands at once (seed 003's deadlock pair)
  psbase storm --cmd '10:psbase incr db 1 a' --cmd '10:psbase incr db 2 b'
  # how many concurrent one-row inserts before it breaks? (seed 002)
  psbase storm --ramp 50,100,200,500,1000 -- psbase insert log.db msg=task-{i}`,
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			if runtime.GOOS == "windows" {
				return fmt.Errorf("storm is not available on Windows")
			}
			if n <= 0 || loops <= 0 || timeout <= 0 || lines < 0 {
				return usagef("-n, --loops and --timeout must be positive")
			}
			var specs []stormCmdSpec
			if len(args) > 0 {
				specs = append(specs, stormCmdSpec{argv: args, label: strings.Join(args, " ")})
			}
			for _, s := range cmds {
				spec, err := parseStormCmd(s)
				if err != nil {
					return err
				}
				specs = append(specs, spec)
			}
			if len(specs) == 0 {
				return usagef("storm: give a command after -- or with --cmd")
			}
			sizes := []int{n}
			if ramp != "" {
				var err error
				if sizes, err = parseRamp(ramp); err != nil {
					return err
				}
			}
			format, _ := a.outFormat()
			machine := format == "json" || format == "csv"
			var tables stormTables
			var table []stormStats
			anyFailed := false
			for _, size := range sizes {
				cfg := storm.CommandConfig{Loops: loops, Timeout: timeout}
				total := 0
				for _, s := range specs {
					count := s.count
					if count == 0 {
						count = size
					}
					total += count
					cfg.Commands = append(cfg.Commands, storm.Command{Argv: s.argv, Count: count})
				}
				var finish func()
				cfg.Progress, finish = a.stormProgress(total * loops)
				res, err := storm.RunCommands(ctx, cfg)
				finish()
				if res == nil {
					res = &storm.CommandResult{}
				}
				st := summarize(size, res)
				table = append(table, st)
				if st.failed > 0 {
					anyFailed = true
				}
				if machine {
					tables.collect(res, specs, size)
				} else {
					a.reportStorm(res, specs, verbose, lines)
				}
				if err != nil {
					if machine {
						_ = tables.write(a.stdout, format, !a.noHeader)
					}
					return fmt.Errorf("storm harness failed at size %d: %w", size, err)
				}
			}
			if len(sizes) > 1 {
				if machine {
					tables.ramp = rampRows(table)
				} else {
					fmt.Fprintln(a.stdout)
					writeRampTable(a.stdout, table)
				}
			}
			if machine {
				if err := tables.write(a.stdout, format, !a.noHeader); err != nil {
					return err
				}
			}
			if anyFailed {
				failed := 0
				for _, st := range table {
					failed += st.failed
				}
				return &codeError{code: exitFailures, msg: fmt.Sprintf("storm: %d cop(ies) failed", failed)}
			}
			return nil
		},
	}
	f := c.Flags()
	f.SetInterspersed(false) // everything after the command is the command's
	f.IntVarP(&n, "count", "n", 10, "number of copies started at once")
	f.IntVar(&loops, "loops", 1, "repeat the storm this many times")
	f.DurationVar(&timeout, "timeout", time.Minute, "kill copies still running this long after the release (they count as failed)")
	f.StringArrayVar(&cmds, "cmd", nil, "a shell command to run, '[COUNT:]CMD' (repeatable)")
	f.StringVar(&ramp, "ramp", "", "run at each of these sizes: 50,100,200 (prints a table)")
	f.BoolVarP(&verbose, "verbose", "v", false, "list every copy, not only the failed ones")
	f.IntVar(&lines, "stderr-lines", 3, "lines of stderr shown per failed copy")
	return c
}

// stormProgress returns the progress callback: a bar on a terminal, a line
// every 10% otherwise, nothing with --quiet.
func (a *app) stormProgress(total int) (func(done, total int), func()) {
	if a.quiet {
		return nil, func() {}
	}
	if isTerminal(a.stderr) {
		bar := progressbar.NewOptions(total, progressbar.OptionSetWriter(a.stderr),
			progressbar.OptionSetDescription("storm"), progressbar.OptionShowCount(),
			progressbar.OptionClearOnFinish())
		return func(done, _ int) { _ = bar.Set(done) }, func() { _ = bar.Finish() }
	}
	step := max(total/10, 1)
	return func(done, t int) {
		if done%step == 0 || done == t {
			fmt.Fprintf(a.stderr, "storm: %d/%d done\n", done, t)
		}
	}, func() {}
}

// Machine-readable storm output (--json, --csv): three tables, each row
// tagged with its table in the "row" column, every table printed whole
// after the storm: "copy" (one row per copy), "command" (one row per
// command and loop: counts, exit codes, percentiles) and, with --ramp,
// "ramp" (one row per size). JSON lines carry the tag in each object; CSV
// writes each table with its own header line, the tables separated by an
// empty line.
var (
	copyCols    = []string{"row", "size", "loop", "task", "command", "pid", "exit", "duration_ms", "timed_out", "error", "stderr"}
	commandCols = []string{"row", "size", "loop", "command", "label", "copies", "ok", "failed", "exit_codes", "skew_ms", "wall_ms", "p50_ms", "p99_ms", "max_ms"}
	rampCols    = []string{"row", "size", "procs", "failed", "timed_out", "wall_ms", "p50_ms", "p99_ms", "max_ms", "skew_ms"}
)

// stormTables collects the rows of the machine-readable output.
type stormTables struct {
	copies, commands, ramp [][]any
}

// commandSummary is one command's line of one loop.
type commandSummary struct {
	ok, failed    int
	codes         string
	p50, p99, max time.Duration
}

func summarizeCommand(l *storm.CommandLoop, ci int) commandSummary {
	var cs commandSummary
	codes := map[int]int{}
	var durs []time.Duration
	for _, p := range l.Procs {
		if p.Command != ci {
			continue
		}
		if p.Failed() {
			cs.failed++
		} else {
			cs.ok++
		}
		codes[p.ExitCode]++
		durs = append(durs, p.Duration)
	}
	var parts []string
	for _, code := range slices.Sorted(mapKeys(codes)) {
		parts = append(parts, fmt.Sprintf("%d×%d", code, codes[code]))
	}
	cs.codes = strings.Join(parts, " ")
	cs.p50, cs.p99, cs.max = storm.Percentile(durs, 0.50), storm.Percentile(durs, 0.99), storm.Percentile(durs, 1)
	return cs
}

// collect adds one storm size's rows to the machine-readable tables.
func (t *stormTables) collect(res *storm.CommandResult, specs []stormCmdSpec, size int) {
	for _, l := range res.Loops {
		for _, p := range l.Procs {
			t.copies = append(t.copies, []any{"copy", size, l.Loop, p.Task, p.Command, p.Pid, p.ExitCode,
				msf(p.Duration), p.TimedOut, p.Err, p.Stderr})
		}
		for ci, spec := range specs {
			cs := summarizeCommand(l, ci)
			t.commands = append(t.commands, []any{"command", size, l.Loop, ci, spec.label, cs.ok + cs.failed, cs.ok, cs.failed,
				cs.codes, msf(l.Skew), msf(l.Wall), msf(cs.p50), msf(cs.p99), msf(cs.max)})
		}
	}
}

// write prints the tables in format (json or csv).
func (t *stormTables) write(w io.Writer, format string, header bool) error {
	tables := []struct {
		cols []string
		rows [][]any
	}{{copyCols, t.copies}, {commandCols, t.commands}, {rampCols, t.ramp}}
	first := true
	for _, tb := range tables {
		if len(tb.rows) == 0 {
			continue
		}
		if format == "csv" && !first {
			if _, err := io.WriteString(w, "\n"); err != nil {
				return err
			}
		}
		first = false
		rw := &rowWriter{format: format, cols: tb.cols, header: header, w: w}
		if format == "csv" {
			rw.cw = csv.NewWriter(w)
			if header {
				rw.writeHeader()
			}
		}
		for _, row := range tb.rows {
			if err := rw.writeRow(row); err != nil {
				return err
			}
		}
		if err := rw.flush(); err != nil {
			return err
		}
	}
	return nil
}

// reportStorm prints one storm size's text report: per loop the release,
// per command the counts and percentiles, and the failed copies (every
// copy with -v).
func (a *app) reportStorm(res *storm.CommandResult, specs []stormCmdSpec, verbose bool, lines int) {
	w := a.stdout
	for _, l := range res.Loops {
		fmt.Fprintf(w, "storm: %d copies, loop %d/%d: released with skew %s, wall %s\n",
			len(l.Procs), l.Loop+1, len(res.Loops), ms(l.Skew), ms(l.Wall))
		for ci, spec := range specs {
			cs := summarizeCommand(l, ci)
			fmt.Fprintf(w, "  [%d] %s: %d ok, %d failed; exit codes %s; p50 %s p99 %s max %s\n",
				ci, spec.label, cs.ok, cs.failed, cs.codes, ms(cs.p50), ms(cs.p99), ms(cs.max))
		}
		for _, p := range l.Procs {
			if !verbose && !p.Failed() {
				continue
			}
			status := "ok"
			switch {
			case p.TimedOut:
				status = "TIMEOUT (killed)"
			case p.Err != "":
				status = "FAILED: " + p.Err
			case p.ExitCode != 0:
				status = "FAILED"
			}
			fmt.Fprintf(w, "  task %d [%d] pid %d exit %d after %s: %s\n", p.Task, p.Command, p.Pid, p.ExitCode, ms(p.Duration), status)
			if p.Failed() {
				for _, line := range firstLines(p.Stderr, lines) {
					fmt.Fprintf(w, "      | %s\n", line)
				}
			}
		}
	}
}

func mapKeys(m map[int]int) func(yield func(int) bool) {
	return func(yield func(int) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// rampRows turns the size table into "ramp" rows.
func rampRows(table []stormStats) [][]any {
	var rows [][]any
	for _, st := range table {
		rows = append(rows, []any{"ramp", st.size, st.procs, st.failed, st.timedOut, msf(st.wall), msf(st.p50), msf(st.p99), msf(st.max), msf(st.skew)})
	}
	return rows
}

func msf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func writeRampTable(w io.Writer, table []stormStats) {
	fmt.Fprintf(w, "%8s %8s %8s %10s %10s %10s %10s %9s\n", "SIZE", "PROCS", "FAILED", "WALL", "P50", "P99", "MAX", "SKEW")
	for _, st := range table {
		fmt.Fprintf(w, "%8d %8d %8d %10s %10s %10s %10s %9s\n", st.size, st.procs, st.failed,
			ms(st.wall), ms(st.p50), ms(st.p99), ms(st.max), ms(st.skew))
	}
}
