package psbase

import (
	"bytes"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// Tx is a transaction on the store: one bbolt transaction on a database file
// opened for it alone, under the store's lock (exclusive for a writable Tx,
// shared for a read-only one). The lock is held from before the file is
// opened until after it is closed, so no other process can see the file
// between two transactions' states.
//
// A Tx comes from Store.Txn, Store.View or Store.Begin. Txn and View end it
// themselves; a Tx from Begin must end with Commit or Rollback, which close
// the file and release the lock: until then every other process waits.
//
// A Tx is for one goroutine at a time. Records it returns stay valid after it
// ends (they are copies). Never take another store's lock while a Tx is open
// (flock has no deadlock detection): finish one, then start the other.
type Tx struct {
	s       *Store
	op      string
	db      *bolt.DB
	btx     *bolt.Tx
	sch     *schema
	write   bool
	release func()

	mu      sync.Mutex // guards done against concurrent Commit/Rollback
	done    bool
	records *bolt.Bucket
	meta    *bolt.Bucket

	schemaChanged bool
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

// finish commits (if commit and writable) or rolls back, then closes the
// bbolt handle and releases the lock, in that order, whatever fails.
func (tx *Tx) finish(commit bool) (err error) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.done {
		return ErrTxDone
	}
	tx.done = true
	defer tx.release()
	defer func() {
		if cerr := tx.db.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	defer guardPanic(&err)
	if commit && tx.write {
		if tx.schemaChanged {
			raw, err := encodeSchema(tx.sch)
			if err != nil {
				_ = tx.btx.Rollback()
				return err
			}
			if err := tx.meta.Put(keySchema, raw); err != nil {
				_ = tx.btx.Rollback()
				return err
			}
		}
		if err := tx.btx.Commit(); err != nil {
			return classifyIOError(err)
		}
		tx.s.noteSchema(tx.sch)
		return nil
	}
	return tx.btx.Rollback()
}

// check returns ErrTxDone after the end, ErrReadOnly for a write in a
// read-only transaction.
func (tx *Tx) check(write bool) error {
	if tx.done {
		return ErrTxDone
	}
	if write && !tx.write {
		return errorf(ErrReadOnly, "write in a read-only transaction")
	}
	return nil
}

// loadSchema reads the schema from the meta bucket, reusing the Store's
// cached copy when the stored bytes are unchanged.
func (s *Store) loadSchema(meta *bolt.Bucket) (*schema, error) {
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
