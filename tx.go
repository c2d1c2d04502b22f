package psbase

// tx.go: the Tx type and how a transaction ends (Commit, Rollback).
//
// May touch: the storage seam's transaction it was handed (internal/kv); the
// Store's schema cache. Never a file or a lock directly: ending the kv.Tx
// closes the backend's file and releases its lock.

import (
	"bytes"
	"context"
	"fmt"
	"runtime/debug"
	"sync/atomic"

	"github.com/psbase/psbase/internal/backend"
	"github.com/psbase/psbase/internal/kv"
)

// Tx is a transaction on the store, under the store's lock (exclusive for a
// writable Tx, shared for a read-only one). For a local store it is one bbolt
// transaction on a database file opened for it alone: the lock is held from
// before the file is opened until after it is closed, so no other process can
// see the file between two transactions' states.
//
// A Tx comes from Store.Txn, Store.View or Store.Begin. Txn and View end it
// themselves; a Tx from Begin must end with Commit or Rollback, which close
// the file and release the lock: until then every other process waits.
//
// A Tx is for one goroutine at a time (Commit and Rollback may race: exactly
// one of them ends it). Records it returns stay valid after it ends (they are
// copies). Never take another store's lock while a Tx is open (flock has no
// deadlock detection): finish one, then start the other.
type Tx struct {
	s      *Store
	ctx    context.Context // the caller's: its end stops the Tx's work (nil: never)
	op     string
	kt     kv.Tx
	sch    *schema
	write  bool
	format uint32 // the store's format version (record encoding, see record.go)

	done   atomic.Bool // set once, by whichever of Commit and Rollback comes first
	broken bool        // the storage failed under a method: see guard.go
	depth  int         // nesting of guarded methods: see guard.go

	records kv.Bucket
	meta    kv.Bucket
	lookup  [8]byte // the key buffer of lookupKey (record.go)

	schemaChanged bool
	feed          txFeed // what a writable transaction changed (changes.go)
}

// ctxCheckEvery is how many records a long walk handles between two looks
// at its context.
const ctxCheckEvery = 256

// stopped returns the context's error once it ended: a transaction whose
// caller gave up stops its work, its writes are rolled back and the lock
// released (ErrLockTimeout stays for a lock that was never had).
func (tx *Tx) stopped() error {
	if tx.ctx == nil || tx.s.cfg.weak.ignoreCtx {
		return nil
	}
	if err := tx.ctx.Err(); err != nil {
		return fmt.Errorf("%s stopped after taking the lock, its writes not kept: %w", tx.op, err)
	}
	return nil
}

// tick counts one record of a long walk and, every ctxCheckEvery, looks at
// the context.
func (tx *Tx) tick(n *int) error {
	*n++
	if *n%ctxCheckEvery == 0 {
		return tx.stopped()
	}
	return nil
}

// init reads the format and the schema at the start of a transaction.
func (tx *Tx) init() (err error) {
	old, err := tx.enter(false)
	if err != nil {
		return err
	}
	defer tx.exit(old, &err)
	if tx.s != nil && tx.s.remote != nil && tx.kt.Bucket(bucketMeta) == nil {
		// A remote store has no file that could be something else: no
		// meta at all is no store (never created, or destroyed), as a
		// missing file is locally.
		return errorf(ErrNotExist, "no store at %s (Create it, or Open with WithCreate)", tx.s.path)
	}
	if tx.format, err = checkFormat(tx.kt, tx.write); err != nil {
		return err
	}
	tx.meta = tx.kt.Bucket(bucketMeta)
	tx.records = tx.kt.Bucket(bucketRecords)
	if tx.write {
		tx.watchRecords() // every record written from here on is noted for the change log
	}
	tx.sch, err = tx.s.loadSchema(tx.meta)
	return err
}

// Writable reports whether the transaction may write.
func (tx *Tx) Writable() bool { return tx.write }

// Schema returns the table's fields as this transaction sees them.
func (tx *Tx) Schema() []Field { return tx.sch.public() }

// Commit makes a writable transaction's changes durable (bbolt fsyncs the
// file before Commit returns), closes the database and releases the lock.
// For a read-only transaction it is the same as Rollback. After Commit or
// Rollback every method returns ErrTxDone.
func (tx *Tx) Commit() error {
	if err := tx.finish(true); err != nil {
		return wrapErr("commit", tx.s.path, err)
	}
	return nil
}

// Rollback discards the transaction's changes, closes the database and
// releases the lock. Calling it after Commit is a harmless no-op returning
// ErrTxDone, so `defer tx.Rollback()` is the usual pattern.
func (tx *Tx) Rollback() error {
	if err := tx.finish(false); err != nil {
		return wrapErr("rollback", tx.s.path, err)
	}
	return nil
}

// finish commits (if commit and writable) or rolls back, and ends the
// backend's transaction, which closes its file and releases the lock whatever
// fails. A broken transaction is abandoned instead (guard.go).
func (tx *Tx) finish(commit bool) (err error) {
	if !tx.done.CompareAndSwap(false, true) {
		return ErrTxDone
	}
	if tx.broken {
		abandon(tx.kt)
		if commit && tx.write {
			return errorf(ErrCorrupt, "not committed: the transaction was abandoned after the file failed to read")
		}
		return nil
	}
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if p := recover(); p != nil {
			abandon(tx.kt)
			err = errorf(ErrCorrupt, "bbolt failed while ending the transaction: %v", p)
		}
	}()
	if commit && tx.write {
		if err := tx.stopped(); err != nil {
			_ = tx.kt.Rollback() // the caller gave up: database/sql's rule
			return err
		}
		if tx.schemaChanged {
			raw, err := encodeSchema(tx.sch)
			if err == nil {
				err = tx.meta.Put(keySchema, raw)
			}
			if err != nil {
				_ = tx.kt.Rollback()
				return err
			}
		}
		// The change log's entry commits with the changes it lists, or
		// not at all (changes.go).
		if err := tx.logChanges(); err != nil {
			_ = tx.kt.Rollback()
			return err
		}
		if err := commitFits(tx.kt); err != nil && !tx.s.cfg.weak.noFreelistFits {
			_ = tx.kt.Rollback()
			return err
		}
		if err := tx.kt.Commit(); err != nil {
			return err
		}
		tx.s.noteSchema(tx.sch)
		return nil
	}
	return tx.kt.Rollback()
}

// readFailure returns the backend's first failed read, if the transaction
// had one, instead of err: a read that failed returned nothing, so what fn
// made of it (ErrNotFound, a missing field) is not to be believed. Without
// a failed read it returns err.
func (tx *Tx) readFailure(err error) error {
	if backend.WeakHideReadFailure.Load() {
		return err
	}
	if e, ok := tx.kt.(interface{ Err() error }); ok {
		if rerr := e.Err(); rerr != nil {
			return rerr
		}
	}
	return err
}

// abandon ends a transaction whose storage failed under it without touching
// the storage again (see kv.Abandoner), or rolls it back if the backend has
// no such need.
func abandon(kt kv.Tx) {
	if a, ok := kt.(kv.Abandoner); ok {
		a.Abandon()
		return
	}
	_ = kt.Rollback()
}

// loadSchema reads the schema from the meta bucket, reusing the Store's
// cached copy when the stored bytes are unchanged.
func (s *Store) loadSchema(meta kv.Bucket) (*schema, error) {
	raw := meta.Get(keySchema)
	if raw == nil {
		return nil, errorf(ErrCorrupt, "no schema in the meta bucket")
	}
	s.schemaMu.Lock()
	cached, cachedRaw := s.schema, s.schemaRaw
	s.schemaMu.Unlock()
	if cached != nil && bytes.Equal(raw, cachedRaw) {
		return cached, nil
	}
	sch, err := decodeSchema(raw)
	if err != nil {
		return nil, err
	}
	s.schemaMu.Lock()
	s.schema, s.schemaRaw = sch, bytes.Clone(raw)
	s.schemaMu.Unlock()
	return sch, nil
}

// noteSchema drops the cache after a transaction changed the schema.
func (s *Store) noteSchema(sch *schema) {
	s.schemaMu.Lock()
	if s.schema != sch {
		s.schema, s.schemaRaw = nil, nil
	}
	s.schemaMu.Unlock()
}
