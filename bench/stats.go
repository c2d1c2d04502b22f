package main

// stats.go: the benchmark's statistics, all from gonum's stat package:
// percentiles and medians by nearest rank (stat.Empirical, the definition
// storm.Percentile and psbase storm use) and Jain's fairness index from
// means.
//
// May touch: nothing (pure computation).

import (
	"math"
	"slices"

	"gonum.org/v1/gonum/stat"
)

// pct is the q-quantile (nearest rank) of sorted nanosecond values, in ns.
func pct(sorted []int64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	xs := make([]float64, len(sorted))
	for i, v := range sorted {
		xs[i] = float64(v)
	}
	return stat.Quantile(q, stat.Empirical, xs, nil)
}

// median is the nearest-rank median of the finite values of xs (NaN when
// there is none): with an even count, the lower of the two middle values.
func median(xs []float64) float64 {
	xs = slices.DeleteFunc(slices.Clone(xs), func(x float64) bool { return math.IsNaN(x) || math.IsInf(x, 0) })
	if len(xs) == 0 {
		return math.NaN()
	}
	slices.Sort(xs)
	return stat.Quantile(0.5, stat.Empirical, xs, nil)
}

// jainIndex is Jain's fairness index of per-lane counts: mean(n)² / mean(n²),
// 1 when every lane did the same, 1/len when one lane did everything; 0
// when nothing was done.
func jainIndex(counts []float64) float64 {
	if len(counts) == 0 {
		return 0
	}
	sq := make([]float64, len(counts))
	for i, c := range counts {
		sq[i] = c * c
	}
	m2 := stat.Mean(sq, nil)
	if m2 == 0 {
		return 0
	}
	m := stat.Mean(counts, nil)
	return m * m / m2
}
