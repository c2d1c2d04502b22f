package storm

// percentile_test.go: Percentile's nearest-rank definition on known
// values, and the old index formula as a negative control.
//
// May touch: nothing.

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(xs ...int) []time.Duration {
		out := make([]time.Duration, len(xs))
		for i, x := range xs {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	for _, tc := range []struct {
		ds   []time.Duration
		q    float64
		want time.Duration
	}{
		{nil, 0.5, 0},
		{ms(7), 0.99, 7 * time.Millisecond},
		{ms(13, 7), 0.5, 7 * time.Millisecond}, // unsorted input
		{ms(7, 13), 0.99, 13 * time.Millisecond},
		{ms(1, 2, 3, 4), 0.5, 2 * time.Millisecond},
		{ms(1, 2, 3, 4), 0.75, 3 * time.Millisecond},
		{ms(1, 2, 3, 4), 1, 4 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 0.1, 1 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 0.99, 10 * time.Millisecond},
	} {
		if got := Percentile(tc.ds, tc.q); got != tc.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", tc.ds, tc.q, got, tc.want)
		}
	}
	// 1..100: p99 is 99, p50 is 50, p1 is 1.
	var h []time.Duration
	for i := 1; i <= 100; i++ {
		h = append(h, time.Duration(i))
	}
	if Percentile(h, 0.99) != 99 || Percentile(h, 0.5) != 50 || Percentile(h, 0.01) != 1 {
		t.Errorf("1..100: p1 %v p50 %v p99 %v", Percentile(h, 0.01), Percentile(h, 0.5), Percentile(h, 0.99))
	}
	// Negative control: the index formula psbase storm used before,
	// (n-1)·99/100, gives p99 = p50 for two values; the case above
	// ({7, 13}, 0.99 → 13) catches it.
	old := func(ds []time.Duration, pct int) time.Duration { return ds[(len(ds)-1)*pct/100] }
	two := ms(7, 13)
	if old(two, 99) != old(two, 50) || old(two, 99) == Percentile(two, 0.99) {
		t.Fatal("negative control: the old formula does not show the p99 = p50 bug")
	}
}
