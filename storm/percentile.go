package storm

// percentile.go: the one percentile definition of psbase's storms and
// benchmarks (storm, psbase storm, bench/): nearest rank.
//
// May touch: nothing (pure computation).

import (
	"math"
	"slices"
	"time"
)

// Percentile returns the q-quantile (0 < q ≤ 1; q = 0.99 for p99) of the
// durations by the nearest-rank definition: the smallest value that at
// least a fraction q of the values do not exceed, that is the value of
// rank ⌈q·n⌉ (1-based) in sorted order. It is always one of the values
// (never an interpolation), p100 is the maximum, and with fewer than 100
// values p99 is the maximum too: of 2 durations, p50 is the smaller and
// p99 the larger. This is gonum's stat.Quantile with stat.Empirical, which
// the benchmark (bench/) uses. ds need not be sorted (it is not changed);
// an empty ds gives 0.
func Percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := ds
	if !slices.IsSorted(s) {
		s = slices.Clone(ds)
		slices.Sort(s)
	}
	return s[rank(len(s), q)]
}

// rank is the 0-based index of the nearest-rank q-quantile of n sorted
// values: the first index i with i+1 ≥ q·n, computed as gonum does (no
// rounding of q·n), so the two agree on every n and q.
func rank(n int, q float64) int {
	i := int(math.Ceil(q*float64(n))) - 1
	return max(0, min(i, n-1))
}
