package lock

// May touch: <db>.gate and <db>.lock, through lockFile.

// turnstile.go: the protocols, and the kernel locks of one acquisition: the
// gate <db>.gate, then the data lock <db>.lock (T8).

import (
	"context"
	"errors"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/gofrs/flock"
)

// Protocol selects how shared and exclusive holders queue.
type Protocol int

const (
	// protoDefault is defaultProtocol.
	protoDefault Protocol = iota
	// protoTurnstile: every acquisition first takes an exclusive flock on the
	// gate file <db>.gate, then the data lock in the wanted mode, then drops
	// the gate. A writer keeps the gate while it waits for the readers in
	// front of it to leave, so no new reader can slip past it (T8).
	protoTurnstile
	// protoExclusiveOnly: every acquisition, read or write, is exclusive.
	// Simple and starvation-free (kernel FIFO), but readers never overlap.
	protoExclusiveOnly
	// protoPlain: plain shared/exclusive flock with no anti-starvation.
	// Linux grants a new LOCK_SH while a LOCK_EX waits, so a stream of
	// readers starves writers. It exists ONLY as a negative control for tests.
	protoPlain
)

// defaultProtocol is the measured choice (TestWriterStarvation; Linux 6.x,
// 2 cores, go test -race, 8 reader processes each looping {shared lock, hold
// 3 ms, release}, one writer timing 5 exclusive acquisitions, 3 runs):
//
//	protocol        writer wait median / max        reader acquisitions/s (8 procs)
//	plain           ≥ 1 s: 5/5 gave up at 1 s       ~2,430–2,490  (writer starved)
//	turnstile       3.1–3.6 ms / 3.4–4.8 ms         ~2,300–2,450
//	exclusive-only  27–37 ms / 32–42 ms             ~  370–  400
//
// The turnstile bounds a writer's wait to about one reader hold time and
// keeps readers overlapping (reads/s within ~5% of plain); exclusive-only
// also bounds it, but serializes readers (~6x fewer reads/s here) and makes a
// writer wait behind the whole queue. The price of the turnstile is one more
// open and two more flock calls per acquisition (BenchmarkAcquire,
// uncontended: shared 21 µs vs 12 µs plain), small against a bbolt open and
// transaction (≥ 30 µs, ~300 µs with its syncs).
const defaultProtocol = protoTurnstile

func (p Protocol) resolve() Protocol {
	if p == protoDefault {
		return defaultProtocol
	}
	return p
}

func (p Protocol) String() string {
	switch p {
	case protoDefault:
		return "default(" + defaultProtocol.String() + ")"
	case protoTurnstile:
		return "turnstile"
	case protoExclusiveOnly:
		return "exclusive-only"
	case protoPlain:
		return "plain"
	}
	return "protocol(" + strconv.Itoa(int(p)) + ")"
}

// held is one acquisition's kernel locks: the flock on the data lock file,
// a writer's turnstile gate, and the descriptor of the holder record.
type held struct {
	data *flock.Flock
	gate *flock.Flock // a writer's turnstile gate, released after data

	mu    sync.Mutex  // guards the fields below against the record timer
	timer *time.Timer // writes the holder record if the hold lasts
	done  bool        // released: the timer must not write any more
	rec   *os.File    // the record's descriptor, once written
}

// lockKernel takes the kernel lock(s) for pl's file in the wanted mode.
func (l *File) lockKernel(ctx context.Context, pl *procLock, key fileKey, excl, mayCreate bool) (*held, error) {
	// A kernel wait that an earlier acquisition of this process abandoned
	// (T10) may still be queued, holding the token: let it finish first.
	// Trying the gate meanwhile could take the very lock that wait is
	// queued for, and then wait for the token it holds — a deadlock with
	// ourselves until our deadline (found by group commit, whose waiters
	// abandon their acquisition as soon as a combiner did their write).
	switch {
	case l.noDrain:
	case noWait(ctx):
		select {
		case pl.token <- struct{}{}:
			pl.releaseToken()
		default:
			return nil, errBusy
		}
	default:
		if err := pl.waitToken(ctx); err != nil {
			return nil, err
		}
		pl.releaseToken()
	}
	var gate *flock.Flock
	if l.proto == protoTurnstile {
		var err error
		if !l.gateReady.Load() {
			if _, err = l.prepare(l.gatePath, mayCreate); err == nil {
				l.gateReady.Store(true)
			}
		}
		switch {
		case err == nil:
			// The gate is only ever taken exclusively and never written, so a
			// read-only descriptor is enough when we cannot write it.
			if gate, err = l.lockFile(ctx, pl, l.gatePath, nil, true, true); err != nil {
				return nil, err
			}
		case !excl && errors.Is(err, ErrReadOnly):
			// A reader in a directory it cannot write, with no gate file:
			// no writer has been through a gate here either (it would have
			// created it), so pass without one rather than fail the read.
		default:
			return nil, err
		}
	}
	data, err := l.lockFile(ctx, pl, l.path, &key, excl, !excl)
	if gate != nil && (err != nil || !excl) {
		// A reader is through the turnstile: let the next one in.
		if uerr := gate.Unlock(); uerr != nil && err == nil {
			_ = data.Unlock()
			return nil, flockError(l.gatePath, uerr)
		}
		gate = nil
	}
	if err != nil {
		return nil, err
	}
	// A writer keeps the gate until it releases the data lock. It has held
	// the gate while the readers ahead of it left, so no new reader slipped
	// in (T8); keeping it to the end makes the gate the only queue writers
	// wait in: the next writer, woken when this one leaves, finds the data
	// lock free at once. Releasing the gate as soon as the data lock was
	// taken woke each queued writer twice (gate, then data), which doubled
	// the lock's CPU cost in a write storm.
	return &held{data: data, gate: gate}, nil
}

func (h *held) unlock() error {
	var errs []error
	h.mu.Lock()
	h.done = true
	if h.timer != nil {
		h.timer.Stop()
	}
	defer h.mu.Unlock()
	if h.rec != nil {
		// Empty the record under the lock: an unheld lock file is empty.
		if err := h.rec.Truncate(recordOffset); err != nil {
			errs = append(errs, err)
		}
		if err := h.rec.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := h.data.Unlock(); err != nil { // LOCK_UN and close
		errs = append(errs, err)
	}
	if h.gate != nil {
		if err := h.gate.Unlock(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
