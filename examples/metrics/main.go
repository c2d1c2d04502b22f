// Metrics: many processes finishing at once, each reporting one row.
//
// Seed 002 wants every run of a frequently called job to record its metrics
// (duration, pid, status) in a local SQLite table when it finishes, and asks:
// how many processes can insert one row at the same instant before one fails
// with "database is locked"? It ramps 5, 50, 500 parallel inserts and starts
// losing rows at 500.
//
// Here each worker process is released by the storm package's barrier
// together with all the others and reports its row with one s.Insert. psbase
// queues the writers on its cross-process lock instead of failing them, so
// at every step of the ramp every process succeeds and every row is there.
// Then the program reads a summary back: the slowest jobs (Select with
// OrderBy and Limit) and the jobs per status (Count).
//
//	go run ./examples/metrics [-ramp 5,50,200] [-db PATH]
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/psbase/psbase"
	"github.com/psbase/psbase/examples/internal/demo"
	"github.com/psbase/psbase/storm"
)

var fields = []psbase.Field{
	{Name: "job", Type: psbase.String},
	{Name: "pid", Type: psbase.Int},
	{Name: "status", Type: psbase.String},
	{Name: "duration", Type: psbase.Float}, // seconds the job took
	{Name: "finished", Type: psbase.Time},
}

func main() {
	storm.MaybeLaunch() // a storm launcher never gets past this line
	ramp := flag.String("ramp", "5,50,200", "numbers of processes reporting at once, one storm each")
	db := flag.String("db", "", "store file (overwritten; default: in a temporary directory)")
	timeout := flag.Duration("timeout", 2*time.Minute, "give up on a storm after this long")
	worker := flag.Int("worker", -1, "internal: run as the worker of this task")
	flag.Parse()
	ctx := context.Background()

	if *worker >= 0 {
		if err := report(ctx, *db, *worker); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}

	path := demo.StorePath(*db, "metrics")
	ok := true
	fmt.Printf("%9s  %13s  %12s  %14s  %9s  %s\n", "processes", "insert errors", "rows present", "slowest insert", "wall", "skew")
	var s *psbase.Store
	for _, f := range strings.Split(*ramp, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			demo.Fatalf("bad -ramp %q", *ramp)
		}
		// A fresh table for each step, as the seed's create_table() does.
		s, err = psbase.Create(ctx, path, fields, psbase.WithOverwrite())
		if err != nil {
			demo.Fatalf("%v", err)
		}
		l := demo.Storm(ctx, n, *timeout, "-worker", "{i}", "-db", path)
		failed, first := demo.Failures(l)
		rows, err := s.Select(ctx, psbase.Query{Fields: []string{"job"}})
		if err != nil {
			demo.Fatalf("%v", err)
		}
		jobs := map[string]int{} // every job's row must be there exactly once
		for _, r := range rows {
			jobs[r.Values["job"].(string)]++
		}
		var slowest time.Duration // an Insert's own time, waiting for the lock included
		for _, line := range demo.Lines(l) {
			if d, err := time.ParseDuration(line); err == nil {
				slowest = max(slowest, d)
			}
		}
		fmt.Printf("%9d  %13d  %12d  %14s  %9s  %s\n", n, failed, len(rows), demo.Ms(slowest), demo.Ms(l.Wall), demo.Ms(l.Skew))
		if failed > 0 {
			fmt.Printf("  first failure: %s\n", first)
		}
		for i := range n {
			if jobs["job-"+strconv.Itoa(i)] != 1 {
				ok = false
			}
		}
		if failed > 0 || len(rows) != n {
			ok = false
		}
	}

	// What the last step's table says.
	slowest, err := s.Select(ctx, psbase.Query{OrderBy: []psbase.Order{psbase.Desc("duration")}, Limit: 3})
	if err != nil {
		demo.Fatalf("%v", err)
	}
	fmt.Println("slowest jobs:")
	for _, r := range slowest {
		v := r.Values
		fmt.Printf("  %-8s pid %-7d %-6s %.2f s\n", v["job"], v["pid"], v["status"], v["duration"])
	}
	var counts []string
	for _, st := range []string{"ok", "failed"} {
		c, err := s.Count(ctx, psbase.Eq("status", st))
		if err != nil {
			demo.Fatalf("%v", err)
		}
		counts = append(counts, fmt.Sprintf("%s %d", st, c))
	}
	fmt.Println("jobs by status:", strings.Join(counts, ", "))

	if !ok {
		fmt.Println("FAILED: a process could not report, or a row is missing or doubled")
		demo.Exit(1)
	}
	demo.Exit(0)
}

// report is one worker: a job that just finished and records its metrics
// with one Insert, then prints how long the Insert took. The job's duration
// and status are made up; the Insert, at the same instant as every other
// worker's, is the real thing.
func report(ctx context.Context, path string, task int) error {
	s, err := psbase.Open(ctx, path)
	if err != nil {
		return err
	}
	status := "ok"
	if rand.IntN(10) == 0 {
		status = "failed"
	}
	start := time.Now()
	_, err = s.Insert(ctx, psbase.Values{
		"job":      "job-" + strconv.Itoa(task),
		"pid":      os.Getpid(),
		"status":   status,
		"duration": 0.5 + 9.5*rand.Float64(),
		"finished": time.Now(),
	})
	fmt.Println(time.Since(start)) // for the "slowest insert" column
	return err
}
