package main

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3" // the C SQLite, registered as "sqlite3"
	"github.com/psbase/psbase"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// The systems under test. See README.md for what each one is.
const (
	sysPsbase         = "psbase"
	sysPsbasePerOp    = "psbase-per-op" // psbase WithoutGroupCommit and WithoutWarmReads: every operation alone
	sysBoltTimeout    = "bbolt-timeout"
	sysSeedPolling    = "seed-polling"
	sysSQLiteWAL      = "sqlite-wal"
	sysSQLiteRollback = "sqlite-rollback"
	sysBoltHeld       = "bbolt-held"
)

// allSystems is the order systems appear in reports; rounds rotate it.
var allSystems = []string{sysPsbase, sysPsbasePerOp, sysBoltTimeout, sysSeedPolling, sysSQLiteWAL, sysSQLiteRollback, sysBoltHeld,
	sysPsbaseEtcd, sysPsbaseEtcdNoFsync}

// waitLimit is every system's lock or busy timeout: psbase's default lock
// timeout, bbolt's Options.Timeout, the seed lock's give-up time and
// SQLite's busy_timeout.
const waitLimit = 30 * time.Second

// seedPollInterval is the seeds' retry interval (seeds/001_*: wait_secs=.01).
const seedPollInterval = 10 * time.Millisecond

// tripwireTimeout is the bbolt Options.Timeout used where another lock
// already serializes access (seed-polling), as psbase does.
const tripwireTimeout = 2 * time.Second

var (
	boltBucket = []byte("t")
	fields     = []psbase.Field{{Name: "n", Type: psbase.Int}, {Name: "payload", Type: psbase.String}}
)

// client runs operations against one store from one worker process. Each
// method is one durable transaction (writes) or one consistent read.
type client interface {
	insert(n int64, payload string) error
	get(id uint64) error
	incr(id uint64) error
	close() error
}

// heldOnce reports whether the system keeps its database open in the worker
// (bbolt-held), so lanes are goroutines of one process instead of processes.
func heldOnce(sys string) bool { return sys == sysBoltHeld }

// openClient prepares sys for operations on the store at path. What it
// opens is per process: psbase a Store handle (no file stays open),
// SQLite one connection, bbolt-held the bbolt file; bbolt-timeout and
// seed-polling nothing (they open per operation).
func openClient(ctx context.Context, sys, path string) (client, error) {
	switch sys {
	case sysPsbase:
		s, err := psbase.Open(ctx, path)
		if err != nil {
			return nil, err
		}
		return &psbaseClient{s: s}, nil
	case sysPsbasePerOp:
		s, err := psbase.Open(ctx, path, psbase.WithoutGroupCommit(), psbase.WithoutWarmReads())
		if err != nil {
			return nil, err
		}
		return &psbaseClient{s: s, perOp: true}, nil
	case sysPsbaseEtcd, sysPsbaseEtcdNoFsync:
		// path is this worker's etcd:// URL (preferEndpoint).
		s, err := psbase.Open(ctx, path)
		if err != nil {
			return nil, err
		}
		return &psbaseClient{s: s}, nil
	case sysBoltTimeout:
		return &boltOpenClient{path: path}, nil
	case sysSeedPolling:
		return &boltOpenClient{path: path, seedLock: path + ".lock"}, nil
	case sysBoltHeld:
		db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: waitLimit})
		if err != nil {
			return nil, err
		}
		return &boltHeldClient{db: db}, nil
	case sysSQLiteWAL, sysSQLiteRollback:
		return openSQLiteClient(ctx, sys, path)
	}
	return nil, fmt.Errorf("unknown system %q", sys)
}

// storePath is the file name of a store of sys in dir.
func storePath(dir, sys, name string) string {
	ext := ".db"
	if strings.HasPrefix(sys, "sqlite") {
		ext = ".sqlite"
	}
	return dir + "/" + name + "-" + sys + ext
}

// removeStore deletes a store and its side files.
func removeStore(path string) {
	if strings.HasPrefix(path, "etcd://") {
		return // the next Create WithOverwrite replaces it; the cluster goes at the end
	}
	for _, suffix := range []string{"", ".lock", "-wal", "-shm", "-journal", ".compact"} {
		_ = os.Remove(path + suffix)
	}
	// psbase's lock layer may keep more files next to the store.
	matches, _ := filepath.Glob(path + ".*")
	for _, m := range matches {
		_ = os.Remove(m)
	}
}

// buildStore creates a fresh store of sys at path holding records rows
// (IDs 1..records, n = ID) in large transactions. The counter scenario uses
// record 1 (n starts at 1, see counterValue).
func buildStore(ctx context.Context, sys, path string, records int) error {
	removeStore(path)
	chunk := 50_000
	if isEtcd(sys) {
		chunk = etcdBuildChunk
	}
	switch sys {
	case sysPsbase, sysPsbasePerOp, sysPsbaseEtcd, sysPsbaseEtcdNoFsync:
		s, err := psbase.Create(ctx, path, fields, psbase.WithOverwrite())
		if err != nil {
			return err
		}
		defer s.Close()
		for done := 0; done < records; {
			end := min(done+chunk, records)
			err := s.Txn(ctx, func(tx *psbase.Tx) error {
				for i := done; i < end; i++ {
					if _, err := tx.Insert(psbase.Values{"n": int64(i + 1), "payload": payloadFor(i + 1)}); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			done = end
		}
		return nil
	case sysBoltTimeout, sysSeedPolling, sysBoltHeld:
		db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: waitLimit})
		if err != nil {
			return err
		}
		defer db.Close()
		if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucketIfNotExists(boltBucket); return err }); err != nil {
			return err
		}
		for done := 0; done < records; {
			end := min(done+chunk, records)
			err := db.Update(func(tx *bolt.Tx) error {
				b := tx.Bucket(boltBucket)
				b.FillPercent = 1 // sequential keys: pack pages full
				for i := done; i < end; i++ {
					id, _ := b.NextSequence()
					if err := b.Put(boltKey(id), boltValue(int64(i+1), payloadFor(i+1))); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			done = end
		}
		return nil
	case sysSQLiteWAL, sysSQLiteRollback:
		db, err := sql.Open("sqlite3", sqliteDSN(sys, path))
		if err != nil {
			return err
		}
		defer db.Close()
		db.SetMaxOpenConns(1)
		if _, err := db.ExecContext(ctx, `CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, payload TEXT NOT NULL)`); err != nil {
			return err
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		st, err := tx.PrepareContext(ctx, `INSERT INTO t (n, payload) VALUES (?, ?)`)
		if err != nil {
			return err
		}
		for i := 0; i < records; i++ {
			if _, err := st.ExecContext(ctx, int64(i+1), payloadFor(i+1)); err != nil {
				return err
			}
		}
		st.Close()
		return tx.Commit()
	}
	return fmt.Errorf("unknown system %q", sys)
}

// counterValue returns field n of record id and the number of records.
func counterValue(ctx context.Context, sys, path string, id uint64) (n int64, rows int, err error) {
	switch sys {
	case sysPsbase, sysPsbasePerOp, sysPsbaseEtcd, sysPsbaseEtcdNoFsync:
		s, err := psbase.Open(ctx, path)
		if err != nil {
			return 0, 0, err
		}
		defer s.Close()
		err = s.View(ctx, func(tx *psbase.Tx) error {
			if id != 0 {
				r, err := tx.Get(id)
				if err != nil {
					return err
				}
				n = r.Values["n"].(int64)
			}
			rows, err = tx.Len()
			return err
		})
		return n, rows, err
	case sysBoltTimeout, sysSeedPolling, sysBoltHeld:
		db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: waitLimit, ReadOnly: true})
		if err != nil {
			return 0, 0, err
		}
		defer db.Close()
		err = db.View(func(tx *bolt.Tx) error {
			b := tx.Bucket(boltBucket)
			if id != 0 {
				v := b.Get(boltKey(id))
				if v == nil {
					return fmt.Errorf("record %d not found", id)
				}
				n = int64(binary.BigEndian.Uint64(v))
			}
			rows = b.Stats().KeyN
			return nil
		})
		return n, rows, err
	case sysSQLiteWAL, sysSQLiteRollback:
		db, err := sql.Open("sqlite3", sqliteDSN(sys, path))
		if err != nil {
			return 0, 0, err
		}
		defer db.Close()
		if id != 0 {
			if err := db.QueryRowContext(ctx, `SELECT n FROM t WHERE id = ?`, int64(id)).Scan(&n); err != nil {
				return 0, 0, err
			}
		}
		err = db.QueryRowContext(ctx, `SELECT count(*) FROM t`).Scan(&rows)
		return n, rows, err
	}
	return 0, 0, fmt.Errorf("unknown system %q", sys)
}

// payloadFor is the string payload of record i: about 40 bytes.
func payloadFor(i int) string { return fmt.Sprintf("payload of record %08d, psbench", i) }

func boltKey(id uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], id)
	return k[:]
}

// boltValue is the raw bbolt systems' record: n (8 bytes) then the payload.
func boltValue(n int64, payload string) []byte {
	v := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint64(v, uint64(n))
	copy(v[8:], payload)
	return v
}

// ---- psbase ----

// psbaseClient is psbase: by default its writes are combined across
// processes (group commit) and its reads keep a handle (warm reads); with
// perOp every operation is alone (the store's counter increments as a Txn).
// On etcd (psbase-etcd) neither exists: every operation is its own etcd
// transaction under the cluster-wide lock.
type psbaseClient struct {
	s     *psbase.Store
	perOp bool
}

func (c *psbaseClient) insert(n int64, payload string) error {
	_, err := c.s.Insert(context.Background(), psbase.Values{"n": n, "payload": payload})
	return err
}

func (c *psbaseClient) get(id uint64) error {
	r, err := c.s.Get(context.Background(), id)
	if err == nil && r.ID != id {
		err = fmt.Errorf("got record %d for %d", r.ID, id)
	}
	return err
}

func (c *psbaseClient) incr(id uint64) error {
	if !c.perOp {
		_, err := c.s.Add(context.Background(), id, "n", 1)
		return err
	}
	return c.incrTxn(id)
}

// incrTxn is the counter as a read-modify-write transaction: Get, then
// UpdateByID with n + 1.
func (c *psbaseClient) incrTxn(id uint64) error {
	return c.s.Txn(context.Background(), func(tx *psbase.Tx) error {
		r, err := tx.Get(id)
		if err != nil {
			return err
		}
		_, err = tx.UpdateByID(id, psbase.Values{"n": r.Values["n"].(int64) + 1})
		return err
	})
}

func (c *psbaseClient) close() error { return c.s.Close() }

// batches: the batches this process's combiners committed and the
// operations in them.
func (c *psbaseClient) batches() (batches, ops uint64) {
	h := c.s.Metrics().BatchSize
	return h.Count, uint64(h.Sum)
}

// ---- bbolt opened per operation: bbolt-timeout and seed-polling ----

// boltOpenClient opens the bbolt file for every operation. Without seedLock
// it relies on bbolt's own flock with Options.Timeout (bbolt retries every
// 50 ms); with seedLock it first takes the seeds' lock: a non-blocking flock
// on a separate lock file retried every 10 ms (shared for reads, exclusive
// for writes), then opens bbolt with a tripwire timeout.
type boltOpenClient struct {
	path     string
	seedLock string
}

func (c *boltOpenClient) do(write bool, fn func(*bolt.Tx) error) error {
	timeout := waitLimit
	if c.seedLock != "" {
		unlock, err := seedAcquire(c.seedLock, write)
		if err != nil {
			return err
		}
		defer unlock()
		timeout = tripwireTimeout
	}
	db, err := bolt.Open(c.path, 0o600, &bolt.Options{Timeout: timeout, ReadOnly: !write})
	if err != nil {
		return err
	}
	if write {
		err = db.Update(fn)
	} else {
		err = db.View(fn)
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}

// seedAcquire is the seeds' polling file lock (seeds/001_*, f_locker).
func seedAcquire(path string, exclusive bool) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	deadline := time.Now().Add(waitLimit)
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, err
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("seed lock: timeout after %v", waitLimit)
		}
		time.Sleep(seedPollInterval)
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}

func (c *boltOpenClient) insert(n int64, payload string) error {
	return c.do(true, func(tx *bolt.Tx) error { return boltInsert(tx, n, payload) })
}

func (c *boltOpenClient) get(id uint64) error {
	return c.do(false, func(tx *bolt.Tx) error { return boltGet(tx, id) })
}

func (c *boltOpenClient) incr(id uint64) error {
	return c.do(true, func(tx *bolt.Tx) error { return boltIncr(tx, id) })
}

func (c *boltOpenClient) close() error { return nil }

// ---- bbolt held open by one process ----

type boltHeldClient struct{ db *bolt.DB }

func (c *boltHeldClient) insert(n int64, payload string) error {
	return c.db.Update(func(tx *bolt.Tx) error { return boltInsert(tx, n, payload) })
}

func (c *boltHeldClient) get(id uint64) error {
	return c.db.View(func(tx *bolt.Tx) error { return boltGet(tx, id) })
}

func (c *boltHeldClient) incr(id uint64) error {
	return c.db.Update(func(tx *bolt.Tx) error { return boltIncr(tx, id) })
}

func (c *boltHeldClient) close() error { return c.db.Close() }

func boltInsert(tx *bolt.Tx, n int64, payload string) error {
	b := tx.Bucket(boltBucket)
	id, err := b.NextSequence()
	if err != nil {
		return err
	}
	return b.Put(boltKey(id), boltValue(n, payload))
}

func boltGet(tx *bolt.Tx, id uint64) error {
	v := tx.Bucket(boltBucket).Get(boltKey(id))
	if v == nil {
		return fmt.Errorf("record %d not found", id)
	}
	_ = append([]byte(nil), v...) // copy out, as any real reader must
	return nil
}

func boltIncr(tx *bolt.Tx, id uint64) error {
	b := tx.Bucket(boltBucket)
	v := b.Get(boltKey(id))
	if v == nil {
		return fmt.Errorf("record %d not found", id)
	}
	nv := append([]byte(nil), v...)
	binary.BigEndian.PutUint64(nv, binary.BigEndian.Uint64(v)+1)
	return b.Put(boltKey(id), nv)
}

// ---- SQLite ----

// sqliteDSN gives every connection the same durability as a bbolt commit
// (synchronous=FULL: the commit is fsync'd before it returns), a 30 s busy
// timeout, and BEGIN IMMEDIATE for explicit transactions.
func sqliteDSN(sys, path string) string {
	mode := "WAL"
	if sys == sysSQLiteRollback {
		mode = "DELETE"
	}
	return fmt.Sprintf("file:%s?_busy_timeout=%d&_journal_mode=%s&_synchronous=FULL&_txlock=immediate",
		path, waitLimit.Milliseconds(), mode)
}

// sqliteClient holds one connection for the worker process, with its
// statements prepared.
type sqliteClient struct {
	db                 *sql.DB
	ins, sel, selN, up *sql.Stmt
}

func openSQLiteClient(ctx context.Context, sys, path string) (client, error) {
	db, err := sql.Open("sqlite3", sqliteDSN(sys, path))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	c := &sqliteClient{db: db}
	for _, p := range []struct {
		st **sql.Stmt
		q  string
	}{
		{&c.ins, `INSERT INTO t (n, payload) VALUES (?, ?)`},
		{&c.sel, `SELECT id, n, payload FROM t WHERE id = ?`},
		{&c.selN, `SELECT n FROM t WHERE id = ?`},
		{&c.up, `UPDATE t SET n = ? WHERE id = ?`},
	} {
		if *p.st, err = db.PrepareContext(ctx, p.q); err != nil {
			db.Close()
			return nil, err
		}
	}
	return c, nil
}

func (c *sqliteClient) insert(n int64, payload string) error {
	_, err := c.ins.Exec(n, payload)
	return err
}

func (c *sqliteClient) get(id uint64) error {
	var (
		gotID, n int64
		payload  string
	)
	return c.sel.QueryRow(int64(id)).Scan(&gotID, &n, &payload)
}

// incr is a read-modify-write in BEGIN IMMEDIATE (the DSN's _txlock), the
// way psbase's Txn does it.
func (c *sqliteClient) incr(id uint64) error {
	tx, err := c.db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var n int64
	if err := tx.Stmt(c.selN).QueryRow(int64(id)).Scan(&n); err != nil {
		return err
	}
	if _, err := tx.Stmt(c.up).Exec(n+1, int64(id)); err != nil {
		return err
	}
	return tx.Commit()
}

func (c *sqliteClient) close() error { return c.db.Close() }
