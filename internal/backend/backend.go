// Package backend is where psbase finds its remote storage backends: a
// backend module (github.com/psbase/psbase/etcd is the one there is)
// registers an Opener for its URL scheme from an init function, as a
// database/sql driver does, and psbase.Open and psbase.Create of a URL with
// that scheme ("etcd://host:2379/jobs") open it. It is the one piece of
// process-wide state psbase keeps for its users: a registry of code, never
// of data, written only by init functions.
//
// A Backend gives transactions on the storage seam (package kv) and keeps
// its contract (see kv): atomic commit, writable transactions excluded from
// each other everywhere the store is shared, read-only ones on one
// snapshot, ordered iteration, per-bucket sequences.
//
// May touch: nothing (a registry in memory).
package backend

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/psbase/psbase/internal/kv"
)

// Backend is one opened remote store.
type Backend interface {
	// Begin starts a transaction. A writable one first takes the store's
	// lock, waiting until ctx ends (then an error wrapping
	// psbase.ErrLockTimeout that names the holder); op names the operation
	// for whoever waits. ctx is the transaction's: its reads and its
	// commit honour it.
	Begin(ctx context.Context, writable bool, op string) (kv.Tx, error)
	// Close releases the backend's connections and sessions.
	Close() error
}

// Destroyer is a Backend that can delete its whole store.
type Destroyer interface {
	Destroy(ctx context.Context) error
}

// Holder is who holds a remote store's lock.
type Holder struct {
	PID   int
	Host  string
	Op    string
	Since time.Time
	Lease string // the backend's own name for the holder's session, if any
}

// HolderLister is a Backend that can say who holds its store's lock.
type HolderLister interface {
	Holders(ctx context.Context) ([]Holder, error)
}

// Config is what psbase passes an Opener.
type Config struct {
	// URL is the store's URL as the caller gave it (it may carry
	// credentials: never print it; print Name instead).
	URL string
	// LockTimeout bounds the wait for the store's lock when the caller's
	// context has no earlier deadline (0: the context alone).
	LockTimeout time.Duration
	// Logger is the caller's (nil: none).
	Logger *slog.Logger
}

// Opener opens the store a URL names. It returns the backend and the
// store's display name: the URL without credentials, which psbase puts in
// every error and log line.
type Opener func(ctx context.Context, cfg Config) (b Backend, name string, err error)

var (
	mu      sync.RWMutex
	openers = map[string]Opener{}
)

// Register makes the backend opened by open available under scheme. It
// panics if the scheme is registered twice, as database/sql.Register does:
// two modules claiming one scheme is a build mistake, not a runtime error.
func Register(scheme string, open Opener) {
	mu.Lock()
	defer mu.Unlock()
	if open == nil {
		panic("psbase/backend: Register of a nil Opener for " + scheme)
	}
	if _, dup := openers[scheme]; dup {
		panic(fmt.Sprintf("psbase/backend: scheme %q registered twice", scheme))
	}
	openers[scheme] = open
}

// Lookup returns the Opener registered for scheme.
func Lookup(scheme string) (Opener, bool) {
	mu.RLock()
	defer mu.RUnlock()
	o, ok := openers[scheme]
	return o, ok
}

// Schemes lists the registered schemes, sorted.
func Schemes() []string {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]string, 0, len(openers))
	for s := range openers {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}
