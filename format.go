package psbase

// May touch: nothing but the transaction it is handed (the meta bucket).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/psbase/psbase/internal/kv"
	berrors "go.etcd.io/bbolt/errors"
)

// FormatVersion is the newest on-disk format this psbase reads and writes,
// described in FORMAT.md. New stores are made in it. Older stores are read
// in their own format; a store of format 2 or 3 becomes format 4 (it gains
// its change log) at its first write that changes something, and Cleanup
// upgrades any older store. From format 2
// on, a store also records the oldest format a reader and a writer must know
// (min_read, min_write): a store whose minimum is newer than FormatVersion is
// refused, unchanged, with ErrNewerFormat.
const FormatVersion = 4

// Bucket and key names of the on-disk format (see FORMAT.md). A psbase file
// is a plain bbolt file: bbolt's own `bbolt check` works on it.
var (
	bucketMeta    = []byte("psbase")  // format, schema, count, created
	bucketRecords = []byte("records") // idKey(ID) → encodeRecord(...)
	bucketIndexes = []byte("indexes") // one sub-bucket per indexed field
	// bucketRequests holds group commit's idempotency records (format 3):
	// queue ID ‖ slot → request ID ‖ result. Created by the first combined
	// write; absent in a store that never combined.
	bucketRequests = []byte("requests")
	// bucketChanges is the change log (format 4, changes.go): uint64
	// big-endian revision → the IDs that revision inserted, updated and
	// deleted. It may be absent in a store whose log never had an entry.
	bucketChanges = []byte("changes")

	keyFormat   = []byte("format")    // uint32 big-endian: FormatVersion
	keySchema   = []byte("schema")    // msgpack of schema
	keyCount    = []byte("count")     // uint64 big-endian: number of records
	keyCreated  = []byte("created")   // RFC 3339 time of creation
	keyMinRead  = []byte("min_read")  // uint32 big-endian: oldest format a reader must know (format ≥ 2)
	keyMinWrite = []byte("min_write") // uint32 big-endian: oldest format a writer must know (format ≥ 2)
	// The change feed (format 4, changes.go).
	keyRev      = []byte("rev")       // uint64 big-endian: the store's revision
	keyLogBase  = []byte("log_base")  // uint64 big-endian: the log holds the revisions after this one
	keyLogBytes = []byte("log_bytes") // uint64 big-endian: the bytes of the log's entries
	keyLogKeep  = []byte("log_keep")  // 2 × uint64 big-endian: retention in revisions and bytes (optional)
	keyStoreID  = []byte("store_id")  // 16 random bytes: the store's identity, new after a Restore
)

// The minimum versions this psbase writes into a store of FormatVersion:
// format 2 changed the record checksum, so a format-1 psbase can neither
// read nor write it. Format 3 only added the group-commit bucket
// "requests", which a format-2 psbase neither reads nor writes. Format 4
// adds the change log, which every write must extend: a format-3 psbase
// would commit writes that no watcher hears of, so it may read a format-4
// store but not write it.
const (
	minReadVersion  = 2
	minWriteVersion = 4
)

func putU32(v uint32) []byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return b[:]
}

func u64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func putU64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

// initFormat writes the buckets and meta of a new store into btx.
func initFormat(btx kv.Tx, s *schema) error {
	meta, err := btx.CreateBucket(bucketMeta)
	if err != nil {
		return err
	}
	if _, err := btx.CreateBucket(bucketRecords); err != nil {
		return err
	}
	ixs, err := btx.CreateBucket(bucketIndexes)
	if err != nil {
		return err
	}
	for _, ix := range s.Indexes {
		if _, err := ixs.CreateBucket([]byte(ix.Field)); err != nil {
			return err
		}
	}
	if err := setFormat(meta, FormatVersion); err != nil {
		return err
	}
	if err := meta.Put(keyCount, putU64(0)); err != nil {
		return err
	}
	if err := meta.Put(keyCreated, []byte(time.Now().UTC().Format(time.RFC3339Nano))); err != nil {
		return err
	}
	if err := initFeed(meta); err != nil {
		return err
	}
	raw, err := encodeSchema(s)
	if err != nil {
		return err
	}
	return meta.Put(keySchema, raw)
}

// checkFormat verifies that btx holds a psbase store this package can read
// (and, with write, write) and returns its format version.
func checkFormat(btx kv.Tx, write bool) (uint32, error) {
	meta := btx.Bucket(bucketMeta)
	if meta == nil {
		return 0, errorf(ErrCorrupt, "not a psbase store: no %q bucket", bucketMeta)
	}
	v := formatOf(meta)
	if v == 0 {
		return 0, errorf(ErrCorrupt, "not a psbase store: no format version")
	}
	if v >= 2 {
		minRead, minWrite := meta.Get(keyMinRead), meta.Get(keyMinWrite)
		if len(minRead) != 4 || len(minWrite) != 4 {
			return 0, errorf(ErrCorrupt, "format %d store without its minimum reader and writer versions", v)
		}
		need := binary.BigEndian.Uint32(minRead)
		if write {
			need = max(need, binary.BigEndian.Uint32(minWrite))
		}
		if need > FormatVersion {
			verb := "read"
			if write {
				verb = "write"
			}
			return 0, fmt.Errorf("%w: the store is format %d; to %s it needs a psbase that knows format %d, this one knows up to %d", ErrNewerFormat, v, verb, need, FormatVersion)
		}
	}
	if btx.Bucket(bucketRecords) == nil || btx.Bucket(bucketIndexes) == nil {
		return 0, errorf(ErrCorrupt, "not a psbase store: missing buckets")
	}
	return v, nil
}

func isBoltTimeout(err error) bool { return errors.Is(err, berrors.ErrTimeout) }

func isBoltFormatError(err error) bool {
	return errors.Is(err, berrors.ErrInvalid) || errors.Is(err, berrors.ErrVersionMismatch) ||
		errors.Is(err, berrors.ErrChecksum) || errors.Is(err, berrors.ErrInvalidMapping) ||
		// bbolt's mmap refuses a file shorter than its two meta pages
		// with an error of no sentinel (FuzzDamagedStore found it).
		strings.Contains(err.Error(), "file size too small")
}

func isBoltSizeError(err error) bool {
	return errors.Is(err, berrors.ErrKeyTooLarge) || errors.Is(err, berrors.ErrValueTooLarge) ||
		errors.Is(err, berrors.ErrKeyRequired)
}

// formatOf returns the format version stored in the meta bucket (0 if none).
func formatOf(meta kv.Bucket) uint32 {
	f := meta.Get(keyFormat)
	if len(f) != 4 {
		return 0
	}
	return binary.BigEndian.Uint32(f)
}

// setFormat writes format version v (and, from format 2, its minimum reader
// and writer versions) into the meta bucket.
func setFormat(meta kv.Bucket, v uint32) error {
	if err := meta.Put(keyFormat, putU32(v)); err != nil {
		return err
	}
	if v < 2 {
		return nil
	}
	if err := meta.Put(keyMinRead, putU32(minReadVersion)); err != nil {
		return err
	}
	return meta.Put(keyMinWrite, putU32(minWriteVersion))
}
