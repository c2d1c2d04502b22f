package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// envWorker carries a workerSpec (JSON) to a re-executed worker process.
const envWorker = "PSBENCH_WORKER"

// File descriptors of the barrier handed to each worker (ExtraFiles).
const (
	fdReady   = 3 // write end: the worker writes one byte when it is ready
	fdRelease = 4 // read end: EOF means "go", for every worker at once
)

// Operations a worker runs.
const (
	opInsert  = "insert"   // single-record inserts
	opIncr    = "incr"     // read-modify-write increments of one record
	opIncrTxn = "incr-txn" // the same as a Txn (Get, UpdateByID) where the system has both
	opGet     = "get"      // gets by random ID
	opMix     = "mix"      // 90% gets, 10% inserts
	opOneShot = "oneshot"  // open the store, insert one record, done
)

// workerSpec tells a worker process what to do.
type workerSpec struct {
	System  string `json:"system"`
	Op      string `json:"op"`
	Path    string `json:"path"`
	Lanes   int    `json:"lanes"`   // goroutines (1, or N for bbolt-held)
	Ops     int    `json:"ops"`     // operations per lane
	Records int    `json:"records"` // gets draw IDs from 1..Records
	Counter uint64 `json:"counter"` // the record incr increments
	Seed    uint64 `json:"seed"`
	Budget  int64  `json:"budget_ns"` // stop starting operations this long after the release (0: none)
	Result  string `json:"result"`    // file to write the workerResult to
}

// laneResult is what one lane (a process, or a goroutine of bbolt-held) did.
// Times are CLOCK_MONOTONIC nanoseconds, comparable across processes.
type laneResult struct {
	Lat  []int64 `json:"lat"`  // latency of each successful operation, ns
	End  []int64 `json:"end"`  // completion time of each successful operation
	Fail int     `json:"fail"` // failed operations
	Skip int     `json:"skip"` // operations not started: the time budget ran out
}

// workerResult is the file a worker leaves behind.
type workerResult struct {
	Lanes    []laneResult `json:"lanes"`
	Errors   []string     `json:"errors,omitempty"` // distinct error messages, a few
	SetupErr string       `json:"setup_err,omitempty"`
	// Group commit (psbase): the batches this process's combiners
	// committed and the operations in them (Metrics().BatchSize).
	Batches    uint64 `json:"batches,omitempty"`
	BatchedOps uint64 `json:"batched_ops,omitempty"`
}

// monoNow is CLOCK_MONOTONIC in nanoseconds: the same clock in every process.
func monoNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// workerMain is the body of a worker process.
func workerMain(raw string) error {
	var spec workerSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		return fmt.Errorf("worker spec: %w", err)
	}
	ready := os.NewFile(fdReady, "ready")
	release := os.NewFile(fdRelease, "release")
	ctx := context.Background()
	res := workerResult{Lanes: make([]laneResult, spec.Lanes)}

	var c client
	var setupErr error
	if spec.Op != opOneShot || heldOnce(spec.System) {
		c, setupErr = openClient(ctx, spec.System, spec.Path)
	}
	if _, err := ready.Write([]byte{1}); err != nil {
		return err
	}
	ready.Close()
	if _, err := io.Copy(io.Discard, release); err != nil {
		return err
	}
	release.Close()
	deadline := int64(0)
	if spec.Budget > 0 {
		deadline = monoNow() + spec.Budget
	}

	if setupErr != nil {
		res.SetupErr = setupErr.Error()
		for i := range res.Lanes {
			res.Lanes[i].Fail = spec.Ops
		}
	} else {
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			seen = map[string]bool{}
		)
		noteErr := func(err error) {
			mu.Lock()
			defer mu.Unlock()
			if msg := err.Error(); !seen[msg] && len(seen) < 5 {
				seen[msg] = true
				res.Errors = append(res.Errors, msg)
			}
		}
		for lane := range res.Lanes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				runLane(ctx, &spec, c, lane, deadline, &res.Lanes[lane], noteErr)
			}()
		}
		wg.Wait()
		if pc, ok := c.(*psbaseClient); ok {
			res.Batches, res.BatchedOps = pc.batches()
		}
		if c != nil {
			_ = c.close()
		}
	}
	data, err := json.Marshal(&res)
	if err != nil {
		return err
	}
	return os.WriteFile(spec.Result, data, 0o600)
}

// runLane runs one lane's operations back to back, until all are done or
// the deadline (if not 0) has passed.
func runLane(ctx context.Context, spec *workerSpec, c client, lane int, deadline int64, out *laneResult, noteErr func(error)) {
	rng := rand.New(rand.NewPCG(spec.Seed, uint64(lane)))
	out.Lat = make([]int64, 0, spec.Ops)
	out.End = make([]int64, 0, spec.Ops)
	for i := 0; i < spec.Ops; i++ {
		start := monoNow()
		if deadline != 0 && start > deadline {
			out.Skip = spec.Ops - i
			break
		}
		var err error
		switch spec.Op {
		case opInsert:
			err = c.insert(int64(i), payloadFor(i))
		case opIncr:
			err = c.incr(spec.Counter)
		case opIncrTxn:
			if t, ok := c.(interface{ incrTxn(uint64) error }); ok {
				err = t.incrTxn(spec.Counter)
			} else {
				err = c.incr(spec.Counter)
			}
		case opGet:
			err = c.get(1 + rng.Uint64N(uint64(spec.Records)))
		case opMix:
			if rng.IntN(10) == 0 {
				err = c.insert(int64(i), payloadFor(i))
			} else {
				err = c.get(1 + rng.Uint64N(uint64(spec.Records)))
			}
		case opOneShot:
			err = oneShot(ctx, spec, c)
		default:
			err = fmt.Errorf("unknown op %q", spec.Op)
		}
		end := monoNow()
		if err != nil {
			out.Fail++
			noteErr(err)
			continue
		}
		out.Lat = append(out.Lat, end-start)
		out.End = append(out.End, end)
	}
}

// oneShot is seeds/002_*: open the store, insert one row, close. bbolt-held
// shares the process's open database instead.
func oneShot(ctx context.Context, spec *workerSpec, held client) error {
	if held != nil {
		return held.insert(1, payloadFor(1))
	}
	c, err := openClient(ctx, spec.System, spec.Path)
	if err != nil {
		return err
	}
	err = c.insert(1, payloadFor(1))
	if cerr := c.close(); err == nil {
		err = cerr
	}
	return err
}
