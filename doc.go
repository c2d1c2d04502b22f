// Package psbase is a process-safe, embedded, single-table record store: one
// table of records in one local file that many OS processes — cron jobs,
// command-line tools, small services — open and change at the same moment
// without losing or corrupting anything.
//
// It is the Go analog of the "PS_Base" pattern (Buzhug's Base with every
// method wrapped in a system-wide lock): Create, Open, Insert, Get, Select,
// Update, Delete, Txn/Begin/Commit, Cleanup, AddField, DropField, SetDefault,
// record IDs and versions. Storage is bbolt (ACID, fsync on commit), records
// are msgpack with a CRC32C each, and the lock is a flock on a file beside
// the database.
//
// # The one invariant
//
// Every method takes the store's lock (shared for reads, exclusive for
// writes, creation, schema changes and Cleanup), then opens the database
// file, runs one bbolt transaction, closes the file and only then releases
// the lock. No write handle is held open between operations, so each
// operation sees the latest committed state of every process and can never
// interleave with another process's write. (Reads on Linux keep one
// read-only handle, checked against the file under the lock before every
// read: a replaced or grown file gets a new handle. See WithoutWarmReads.) A single method call is one atomic, durable
// transaction; Txn groups several (a read-modify-write inside Txn cannot lose
// an update); Update refuses, with ErrConflict, a record whose Version is
// stale, which makes read-then-write across separate calls safe.
//
// # Locking
//
// The lock lives in <db>.lock (and <db>.gate, the turnstile that keeps a
// stream of readers from starving a writer). Waiting happens in the kernel,
// in arrival order; a context deadline, a cancel or the lock timeout
// (DefaultLockTimeout, see WithLockTimeout) returns ErrLockTimeout promptly,
// as a *LockTimeoutError naming the holder's pid. Two goroutines, or two
// Store handles on one path in one process, exclude each other like two
// processes. Stores on network or FUSE file systems are refused
// (ErrUnsupportedFS; see WithAllowNetworkFS): their locks cannot be trusted.
//
// # Records
//
// A schema is an ordered list of Fields (String, Int, Float, Bool, Time,
// Bytes; default; nullable; indexed or unique). Every Record has an ID,
// assigned from a persistent sequence and never reused, and a Version that
// starts at 1 and grows on every update. Values go in as Values, a
// map[string]any or a struct with msgpack tags, and come out as Values or,
// with Record.Decode, a struct. Adding and dropping fields rewrites no
// record. Secondary indexes make filtered selects O(log n + k); a unique
// index and Upsert remove the check-then-insert race.
//
// # Errors
//
// Every error is an *Error naming the operation and the store, wrapping one
// of the sentinel errors (ErrNotFound, ErrConflict, ErrLockTimeout, ErrClosed,
// ErrExists, ErrNotExist, ErrSchema, ErrCorrupt, ErrReadOnly, ErrDuplicate,
// ErrTxDone, ErrUnsupportedFS): test with errors.Is. Bad input never panics,
// never hangs, and never changes the file.
//
// # What psbase does not do
//
// It is not a server and not a multi-table database; it is not for network
// file systems; it serializes writers (one writer at a time, every commit
// fsynced), so it suits tens to hundreds of writes per second from many
// processes, not tens of thousands. The file format is documented in
// FORMAT.md.
package psbase
