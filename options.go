package psbase

// May touch: nothing (configuration).

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/psbase/psbase/internal/lock"
)

// DefaultLockTimeout is how long a method waits for the store's lock when its
// context has no earlier deadline. 30 s is long enough for any burst of
// short operations from hundreds of processes (each holds the lock for well
// under a millisecond plus its fsyncs) and short enough that a cron job stuck
// behind a hung holder fails with a message naming that holder instead of
// piling up. Change it with WithLockTimeout.
const DefaultLockTimeout = 30 * time.Second

// DefaultBoltTimeout is bbolt's own Options.Timeout. psbase never waits on
// bbolt's file lock (its own lock file serializes everyone first), so this
// only trips when a foreign program opened the database file directly.
const DefaultBoltTimeout = 2 * time.Second

// Option configures Create and Open.
type Option func(*config)

type config struct {
	observer       func(context.Context, Event) // WithObserver
	lockTimeout    time.Duration
	boltTimeout    time.Duration
	fileMode       os.FileMode
	overwrite      bool
	create         []Field // Open: create with this schema when missing
	logger         *slog.Logger
	allowNetworkFS bool
	protocol       lock.Protocol
	noSync         bool
	lazyOpen       bool
	noWarmReads    bool
	noGroupCommit  bool
	changeKeep     changeKeep    // WithChangeRetention (zero: leave the store's as it is)
	watchInterval  time.Duration // WithWatchInterval

	// weak turns guarantees off, for the negative controls of the tests
	// only: no option sets it.
	weak weakness
}

// weakness lists the checks a negative control can turn off, to show that
// its test catches what they prevent.
type weakness struct {
	noCommitCheck  bool   // Commit acknowledges without StillHeld/stillTheStore (T20)
	noRenameCheck  bool   // Cleanup renames without StillHeld (T20)
	beforeRename   func() // called by Cleanup between copying and renaming
	afterOpen      func() // called when the database file was opened
	keepMap        bool   // an abandoned handle keeps its mapping (and bbolt's flock)
	noFreelistFits bool   // a write commits without commitFits: freelist and freed pages unchecked (commitguard.go)
	noWarmSize     bool   // the kept read handle is used after the file grew (warm.go, 3)
	noWarmIdentity bool   // the kept read handle is used after the file was replaced (warm.go, 3)
	gcNoRecords    bool   // the combiner ignores idempotency records (groupcommit.go, 3)
	ignoreCtx      bool   // a transaction ignores its context once the lock is held (tx.go)
	// The change feed (changes.go, watch.go).
	feedSkipCombined bool // a combined batch is committed without its change-log entry
	feedLogFirst     bool // a combiner commits the log entry in a transaction of its own, then the data (gcStage "logged" between)
	watchNoWake      bool // Watch neither watches the directory nor polls: it waits for its context only
	watchNoNotify    bool // Watch does not use fsnotify: it polls (the fallback), as when fsnotify fails
	// gcStage is called by a combiner at "taken" (slots taken, nothing
	// applied) and "committed" (committed, nothing published), with the
	// number of other processes' operations in the batch: tests kill or
	// stop the combiner there.
	gcStage func(stage string, others int)

	insertIDNoSeq   bool // InsertWithID leaves the ID sequence behind (insert_id.go)
	insertIDNoClash bool // InsertWithID overwrites a record under the ID (insert_id.go)
}

func newConfig(opts []Option) config {
	c := config{
		lockTimeout:   DefaultLockTimeout,
		boltTimeout:   DefaultBoltTimeout,
		fileMode:      0o644,
		watchInterval: DefaultWatchInterval,
	}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// WithLockTimeout sets how long a method waits for the lock when its context
// has no earlier deadline (default DefaultLockTimeout). Zero or negative
// means no limit but the context's.
func WithLockTimeout(d time.Duration) Option { return func(c *config) { c.lockTimeout = d } }

// WithOverwrite lets Create replace an existing store at the path (its
// records are lost). Without it Create refuses with ErrExists.
func WithOverwrite() Option { return func(c *config) { c.overwrite = true } }

// WithCreate makes Open create the store with this schema when it does not
// exist ("open or create"). When many processes do this at once on a missing
// path, exactly one creates it; the others open it.
func WithCreate(fields []Field) Option {
	return func(c *config) { c.create = append([]Field(nil), fields...) }
}

// WithFileMode sets the permission bits of the files psbase creates (the
// database and its lock files), before the umask. The default is 0644; a
// store shared by several users of one group wants 0664 and a matching umask.
func WithFileMode(m os.FileMode) Option { return func(c *config) { c.fileMode = m.Perm() } }

// WithLogger logs lock waits, opens, compactions and recoveries to l at
// Debug and Info levels. The default is no logging.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithAllowNetworkFS allows stores on network and FUSE file systems (NFS,
// SMB/CIFS, 9p, virtiofs, sshfs...). Their locks may be lost, faked or hang,
// so psbase refuses them by default with ErrUnsupportedFS. Allow them only
// when a single machine uses the store or you know the locks are coherent.
func WithAllowNetworkFS() Option { return func(c *config) { c.allowNetworkFS = true } }

// WithBoltTimeout sets bbolt's own file-lock timeout (default
// DefaultBoltTimeout), the tripwire against programs that open the database
// file without psbase's lock.
func WithBoltTimeout(d time.Duration) Option { return func(c *config) { c.boltTimeout = d } }

// WithNoSync turns off fsync on commit. Commits become much faster and a
// power loss or kernel crash may lose recent ones or corrupt the file; a
// crash of the process alone loses nothing. For tests and throw-away data.
func WithNoSync() Option { return func(c *config) { c.noSync = true } }

// WithoutGroupCommit makes every write run as a transaction of its own, as
// before group commit: by default a single Insert, Update, UpdateByID,
// Delete, Upsert or Add that finds the store's writer lock busy is queued
// beside the store, and whoever holds the lock commits every queued write
// in one transaction (on Linux; elsewhere writes are never combined). Each
// call still returns only after its own write is durable, with its own
// result or error. Txn, Begin and writes of structs always run directly.
func WithoutGroupCommit() Option { return func(c *config) { c.noGroupCommit = true } }

// WithoutWarmReads makes every read open and close the database file, as
// writes do, instead of reusing the read-only handle a Store keeps between
// its read transactions (on Linux; elsewhere reads are never warm). A kept
// handle is as safe as a fresh one (it is checked against the file under the
// lock before every read, see warm.go); it keeps one descriptor and one
// mapping of the file open between operations until Close.
func WithoutWarmReads() Option { return func(c *config) { c.noWarmReads = true } }

// WithLazyOpen makes Open skip its check of the file under the lock: Open
// then only sees that the path exists and is a file, and a file that is not
// a psbase store is reported (ErrCorrupt) by the first operation instead.
// Every operation checks the format under its own lock anyway, so this is
// safe; it halves the lock traffic of one-shot processes (a cron job or CLI
// call that opens, does one thing and exits).
func WithLazyOpen() Option { return func(c *config) { c.lazyOpen = true } }

// DefaultChangeRetention and DefaultChangeLogBytes bound a store's change
// log (see Store.Changes) unless WithChangeRetention set other bounds: the
// log keeps the last 10 000 revisions, and fewer if those take more than
// 64 MiB (the newest revision is always kept). At a few changes per
// revision that is days of a busy cron schedule in a few hundred KiB; a
// watcher that falls further behind gets ErrChangesGone and resyncs.
const (
	DefaultChangeRetention = 10_000
	DefaultChangeLogBytes  = 64 << 20
)

// changeKeep is a change log's retention: revisions and bytes.
type changeKeep struct {
	revs  uint64
	bytes uint64
}

// WithChangeRetention sets how much of its change log a store keeps: the
// last revisions revisions, and fewer if they take more than bytes bytes
// (the newest revision is always kept); zero or negative keeps that bound's
// default (DefaultChangeRetention, DefaultChangeLogBytes). The bounds are
// the store's, not the handle's: the first write of a handle given this
// option records them in the file, and from then on every writer, whatever
// its options, trims the log to them in the same transaction as its
// commit. A handle without the option leaves the recorded bounds alone.
func WithChangeRetention(revisions int, bytes int64) Option {
	return func(c *config) {
		c.changeKeep = changeKeep{revs: DefaultChangeRetention, bytes: DefaultChangeLogBytes}
		if revisions > 0 {
			c.changeKeep.revs = uint64(revisions)
		}
		if bytes > 0 {
			c.changeKeep.bytes = uint64(bytes)
		}
	}
}

// DefaultWatchInterval is how often Store.Watch looks at the store when
// the file system does not tell it about writes (see WithWatchInterval).
const DefaultWatchInterval = time.Second

// WithWatchInterval sets how often Store.Watch reads the store's revision
// when it cannot rely on file-system events alone (default
// DefaultWatchInterval): when fsnotify cannot watch the store's directory
// (no inotify instance or watch left, an unsupported system), and always on
// a store opened WithAllowNetworkFS, where another machine's writes raise
// no local event. Each look is one short read under the shared lock; a
// zero or negative d keeps the default.
func WithWatchInterval(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.watchInterval = d
		}
	}
}
