package psbase

// metrics.go: observability without dependencies — the counters a Store
// handle keeps (operations, errors by sentinel, lock waits and their
// distribution, timeouts, record bytes, group-commit batch sizes), the
// Metrics snapshot that reads them, and the optional observer hook called
// after every operation.
//
// May touch: nothing (counters in memory).

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Event is what an observer (WithObserver) is told after each operation of
// a Store: which one, how long it waited for the lock and ran in all, and
// its error. Combined is true for a write that a group-commit combiner
// applied (its own process's or another's); Wait is then zero.
type Event struct {
	Op       string        // "insert", "get", "select", "txn", ...
	Start    time.Time     // when the call began
	Wait     time.Duration // time spent waiting for the lock
	Duration time.Duration // the whole call, wait included
	Combined bool
	Err      error // nil on success
}

// WithObserver makes the Store call fn after every operation, in the
// calling goroutine, after the lock is released (so fn may take its time,
// though it delays its caller). fn gets the operation's context: a tracing
// observer finds its span there. Use it to feed a tracer or a metrics
// library; Store.Metrics gives the same figures as counters.
func WithObserver(fn func(ctx context.Context, e Event)) Option {
	return func(c *config) { c.observer = fn }
}

// Histogram is a distribution: Counts[i] values fell at or below Bounds[i]
// (and above Bounds[i-1]); the last count is the values above every bound.
// Sum is their total, Count their number.
type Histogram struct {
	Bounds []float64
	Counts []uint64
	Count  uint64
	Sum    float64
}

// Quantile estimates the q-quantile (0 < q ≤ 1) from the buckets: the upper
// bound of the bucket that holds it (+Inf for the last one), 0 if empty.
func (h Histogram) Quantile(q float64) float64 {
	if h.Count == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.Count)))
	var seen uint64
	for i, c := range h.Counts {
		if seen += c; seen >= rank {
			if i < len(h.Bounds) {
				return h.Bounds[i]
			}
			return math.Inf(1)
		}
	}
	return math.Inf(1)
}

// OpMetrics counts one kind of operation.
type OpMetrics struct {
	Count    uint64        // calls
	Errors   uint64        // calls that failed
	Duration time.Duration // their total duration
}

// Metrics is a snapshot of one Store handle's counters since Open or
// Create (other processes keep their own). Export it as it is to expvar
// (expvar.Publish("psbase", expvar.Func(func() any { return s.Metrics() })))
// or to Prometheus from a Collector's Collect: Ops as counters labelled by
// op, Errors by sentinel, LockWait and BatchSize as histograms (their
// Counts are per bucket: add them up for Prometheus's cumulative buckets).
type Metrics struct {
	Since time.Time
	// Ops by operation name ("insert", "get", "select", "txn", "view",
	// "scan" (one page), ...).
	Ops map[string]OpMetrics
	// Errors by sentinel: "ErrLockTimeout", "ErrConflict", ...,
	// "context.Canceled", "context.DeadlineExceeded", "other".
	Errors map[string]uint64
	// LockWait is the distribution of lock waits, in seconds: every
	// acquisition of the store's lock, successful or not (a write queued
	// for group commit waits for a combiner instead: see Ops' durations).
	// LockTimeouts counts the operations that ended with ErrLockTimeout.
	LockWait     Histogram
	LockTimeouts uint64
	// Records and bytes of record values written (inserted or rewritten)
	// and read (decoded) by this handle's transactions, committed or not.
	RecordsWritten, BytesWritten uint64
	RecordsRead, BytesRead       uint64
	// BatchSize is the distribution of the operations in the batches this
	// handle's group-commit combiners committed.
	BatchSize Histogram
	// WarmOpens and WarmReads: see Stats.
	WarmOpens, WarmReads uint64
}

// lockWaitBounds are the lock-wait buckets, in seconds: 10 µs to 10 s.
var lockWaitBounds = []float64{1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1, 10}

// batchBounds are the batch-size buckets.
var batchBounds = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256}

// histogram is a Histogram updated with atomics.
type histogram struct {
	bounds []float64
	counts []atomic.Uint64
	count  atomic.Uint64
	sum    atomic.Uint64 // float64 bits
}

func newHistogram(bounds []float64) *histogram {
	return &histogram{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	i, _ := slices.BinarySearch(h.bounds, v)
	h.counts[i].Add(1)
	h.count.Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

func (h *histogram) snapshot() Histogram {
	out := Histogram{Bounds: h.bounds, Counts: make([]uint64, len(h.counts)), Count: h.count.Load(), Sum: math.Float64frombits(h.sum.Load())}
	for i := range h.counts {
		out.Counts[i] = h.counts[i].Load()
	}
	return out
}

// opCounters count one operation name.
type opCounters struct {
	count, errors, nanos atomic.Uint64
}

// metrics is a Store's counters.
type metrics struct {
	since        time.Time
	ops          sync.Map // string → *opCounters
	errs         [64]atomic.Uint64
	lockWait     *histogram
	lockTimeouts atomic.Uint64
	batchSize    *histogram

	recordsWritten, bytesWritten atomic.Uint64
	recordsRead, bytesRead       atomic.Uint64
}

func newMetrics() *metrics {
	return &metrics{since: time.Now(), lockWait: newHistogram(lockWaitBounds), batchSize: newHistogram(batchBounds)}
}

// errSlot is where an error is counted: its sentinel's position, then the
// context's two errors, then "other".
func errSlot(err error) int {
	for i, s := range sentinels {
		if errors.Is(err, s) && i < len(metrics{}.errs)-3 {
			return i
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return len(sentinels)
	case errors.Is(err, context.DeadlineExceeded):
		return len(sentinels) + 1
	}
	return len(sentinels) + 2
}

// errSlotName names a slot of errSlot.
func errSlotName(i int) string {
	switch {
	case i < len(sentinels):
		return sentinelName(sentinels[i])
	case i == len(sentinels):
		return "context.Canceled"
	case i == len(sentinels)+1:
		return "context.DeadlineExceeded"
	}
	return "other"
}

// sentinelName is a sentinel's Go name.
func sentinelName(s error) string {
	names := map[error]string{
		ErrNotFound: "ErrNotFound", ErrConflict: "ErrConflict", ErrLockTimeout: "ErrLockTimeout",
		ErrClosed: "ErrClosed", ErrExists: "ErrExists", ErrNotExist: "ErrNotExist",
		ErrSchema: "ErrSchema", ErrCorrupt: "ErrCorrupt", ErrReadOnly: "ErrReadOnly",
		ErrDuplicate: "ErrDuplicate", ErrTxDone: "ErrTxDone", ErrUnsupportedFS: "ErrUnsupportedFS",
		ErrUnsafePath: "ErrUnsafePath", ErrNoSpace: "ErrNoSpace", ErrNewerFormat: "ErrNewerFormat",
		ErrUnknownOutcome: "ErrUnknownOutcome", ErrOption: "ErrOption", ErrUnsupported: "ErrUnsupported", ErrChangesGone: "ErrChangesGone", ErrTxTooLarge: "ErrTxTooLarge",
	}
	if n, ok := names[s]; ok {
		return n
	}
	return s.Error()
}

// wrote and read count one record value written or decoded.
func (m *metrics) wrote(n int) { m.recordsWritten.Add(1); m.bytesWritten.Add(uint64(n)) }
func (m *metrics) read(n int)  { m.recordsRead.Add(1); m.bytesRead.Add(uint64(n)) }

// done counts one finished operation and tells the observer.
func (s *Store) done(ctx context.Context, op string, start time.Time, wait time.Duration, combined bool, err error) {
	m := s.met
	d := time.Since(start)
	c, ok := m.ops.Load(op)
	if !ok {
		c, _ = m.ops.LoadOrStore(op, new(opCounters))
	}
	oc := c.(*opCounters)
	oc.count.Add(1)
	oc.nanos.Add(uint64(d))
	if err != nil {
		oc.errors.Add(1)
		m.errs[errSlot(err)].Add(1)
		if errors.Is(err, ErrLockTimeout) {
			m.lockTimeouts.Add(1)
		}
	}
	if fn := s.cfg.observer; fn != nil {
		if ctx == nil {
			ctx = context.Background()
		}
		fn(ctx, Event{Op: op, Start: start, Wait: wait, Duration: d, Combined: combined, Err: err})
	}
}

// Metrics returns a snapshot of this handle's counters. It takes no lock
// and touches no file.
func (s *Store) Metrics() Metrics {
	m := s.met
	out := Metrics{
		Since:          m.since,
		Ops:            map[string]OpMetrics{},
		Errors:         map[string]uint64{},
		LockWait:       m.lockWait.snapshot(),
		LockTimeouts:   m.lockTimeouts.Load(),
		RecordsWritten: m.recordsWritten.Load(),
		BytesWritten:   m.bytesWritten.Load(),
		RecordsRead:    m.recordsRead.Load(),
		BytesRead:      m.bytesRead.Load(),
		BatchSize:      m.batchSize.snapshot(),
	}
	m.ops.Range(func(k, v any) bool {
		c := v.(*opCounters)
		out.Ops[k.(string)] = OpMetrics{Count: c.count.Load(), Errors: c.errors.Load(), Duration: time.Duration(c.nanos.Load())}
		return true
	})
	for i := range m.errs {
		if n := m.errs[i].Load(); n > 0 {
			out.Errors[errSlotName(i)] = n
		}
	}
	out.WarmOpens, out.WarmReads = s.warm.stats()
	return out
}
