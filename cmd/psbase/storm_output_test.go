package main

// storm_output_test.go: psbase storm's percentiles (nearest rank, the one
// definition of storm.Percentile) and its machine-readable tables.
//
// May touch: nothing (in memory).

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/psbase/psbase/storm"
)

// fakeStorm is a storm of two copies of one command, 7 ms and 13 ms.
func fakeStorm() *storm.CommandResult {
	return &storm.CommandResult{Loops: []*storm.CommandLoop{{
		Loop: 0, Skew: time.Millisecond, Wall: 13 * time.Millisecond,
		Procs: []storm.ProcResult{
			{Task: 0, Pid: 10, Duration: 7 * time.Millisecond},
			{Task: 1, Pid: 11, Duration: 13 * time.Millisecond},
		},
	}}}
}

// TestStormPercentiles: with two copies p50 is the faster and p99 the
// slower (nearest rank), in the summary, the per-command line and the
// ramp table alike. The negative control is the old index formula,
// (n-1)·99/100, which gave p99 = p50 = 7 ms: the assertions reject it.
func TestStormPercentiles(t *testing.T) {
	res := fakeStorm()
	st := summarize(2, res)
	if st.p50 != 7*time.Millisecond || st.p99 != 13*time.Millisecond || st.max != 13*time.Millisecond {
		t.Fatalf("summarize: p50 %v p99 %v max %v; want 7ms 13ms 13ms", st.p50, st.p99, st.max)
	}
	cs := summarizeCommand(res.Loops[0], 0)
	if cs.p50 != st.p50 || cs.p99 != st.p99 || cs.max != st.max || cs.codes != "0×2" {
		t.Fatalf("summarizeCommand %+v disagrees with summarize %+v", cs, st)
	}
	durs := []time.Duration{7 * time.Millisecond, 13 * time.Millisecond}
	if oldP99 := durs[(len(durs)-1)*99/100]; oldP99 == st.p99 {
		t.Fatal("negative control: the old formula gives the same p99; the test shows nothing")
	}
	var out bytes.Buffer
	a := &app{stdout: &out}
	a.reportStorm(res, []stormCmdSpec{{label: "x"}}, false, 3)
	if !strings.Contains(out.String(), "p50 7.0ms p99 13.0ms max 13.0ms") {
		t.Fatalf("report: %s", out.String())
	}
}

// TestStormMachineTables: --json and --csv print every table (copy,
// command, ramp), each row tagged, CSV tables each with their header.
func TestStormMachineTables(t *testing.T) {
	res := fakeStorm()
	specs := []stormCmdSpec{{label: "x"}}
	var tb stormTables
	tb.collect(res, specs, 2)
	tb.ramp = rampRows([]stormStats{summarize(2, res)})

	var js bytes.Buffer
	if err := tb.write(&js, "json", true); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(js.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q: %v", line, err)
		}
		kinds[m["row"].(string)]++
		if m["row"] != "copy" && m["p99_ms"] != 13.0 {
			t.Errorf("%s row p99_ms %v, want 13", m["row"], m["p99_ms"])
		}
	}
	if kinds["copy"] != 2 || kinds["command"] != 1 || kinds["ramp"] != 1 {
		t.Fatalf("JSON rows by table: %v", kinds)
	}

	var cb bytes.Buffer
	if err := tb.write(&cb, "csv", true); err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(strings.TrimSpace(cb.String()), "\n\n")
	if len(blocks) != 3 {
		t.Fatalf("CSV: %d tables, want 3:\n%s", len(blocks), cb.String())
	}
	for i, want := range []struct {
		cols []string
		rows int
	}{{copyCols, 2}, {commandCols, 1}, {rampCols, 1}} {
		recs, err := csv.NewReader(strings.NewReader(blocks[i])).ReadAll()
		if err != nil {
			t.Fatalf("table %d: %v", i, err)
		}
		if strings.Join(recs[0], ",") != strings.Join(want.cols, ",") || len(recs) != want.rows+1 {
			t.Errorf("table %d: header %v, %d rows; want %v, %d rows", i, recs[0], len(recs)-1, want.cols, want.rows)
		}
	}
}
