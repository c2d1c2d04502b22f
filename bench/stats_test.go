package main

// stats_test.go: the benchmark's statistics (gonum) use the one percentile
// definition of storm.Percentile, on every size and quantile tried; and
// Jain's index on known cases.
//
// May touch: nothing.

import (
	"math"
	"testing"
	"time"

	"github.com/psbase/psbase/storm"
)

func TestPercentileMatchesStorm(t *testing.T) {
	disagreeOld := false
	for n := 1; n <= 300; n++ {
		ns := make([]int64, n)
		ds := make([]time.Duration, n)
		for i := range ns {
			ns[i] = int64(i*i + 3) // sorted, uneven gaps
			ds[i] = time.Duration(ns[i])
		}
		for _, q := range []float64{0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1} {
			got, want := pct(ns, q), float64(storm.Percentile(ds, q))
			if got != want {
				t.Fatalf("n=%d q=%v: bench (gonum) %v, storm %v", n, q, got, want)
			}
			// Negative control: the index formula psbase storm used,
			// (n-1)·q, is another definition; the comparison above
			// would have caught it.
			if float64(ns[int(float64(n-1)*q)]) != want {
				disagreeOld = true
			}
		}
	}
	if !disagreeOld {
		t.Fatal("negative control: the old formula agreed everywhere; the test shows nothing")
	}
	if pct(nil, 0.5) != 0 {
		t.Fatal("pct of nothing is not 0")
	}
	if m := median([]float64{3, math.NaN(), 1, 2, math.Inf(1)}); m != 2 {
		t.Fatalf("median = %v, want 2 (NaN and Inf dropped)", m)
	}
	if !math.IsNaN(median(nil)) {
		t.Fatal("median of nothing is not NaN")
	}
}

func TestJainIndex(t *testing.T) {
	for _, tc := range []struct {
		counts []float64
		want   float64
	}{
		{[]float64{5, 5, 5, 5}, 1}, {[]float64{8, 0, 0, 0}, 0.25}, {[]float64{0, 0}, 0}, {nil, 0},
		{[]float64{1, 3}, 0.8},
	} {
		if got := jainIndex(tc.counts); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("jainIndex(%v) = %v, want %v", tc.counts, got, tc.want)
		}
	}
}
