package psbase

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/psbase/psbase/internal/kv"
	berrors "go.etcd.io/bbolt/errors"
)

// FormatVersion is the version of the on-disk format described in FORMAT.md.
// A store whose format is newer than this is refused with ErrCorrupt; an
// older one is read as long as this package knows how.
const FormatVersion = 1

// Bucket and key names of the on-disk format (see FORMAT.md). A psbase file
// is a plain bbolt file: bbolt's own `bbolt check` works on it.
var (
	bucketMeta    = []byte("psbase")  // format, schema, count, created
	bucketRecords = []byte("records") // idKey(ID) → encodeRecord(...)
	bucketIndexes = []byte("indexes") // one sub-bucket per indexed field

	keyFormat  = []byte("format")  // uint32 big-endian: FormatVersion
	keySchema  = []byte("schema")  // msgpack of schema
	keyCount   = []byte("count")   // uint64 big-endian: number of records
	keyCreated = []byte("created") // RFC 3339 time of creation
)

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
	var f [4]byte
	binary.BigEndian.PutUint32(f[:], FormatVersion)
	if err := meta.Put(keyFormat, f[:]); err != nil {
		return err
	}
	if err := meta.Put(keyCount, putU64(0)); err != nil {
		return err
	}
	if err := meta.Put(keyCreated, []byte(time.Now().UTC().Format(time.RFC3339Nano))); err != nil {
		return err
	}
	raw, err := encodeSchema(s)
	if err != nil {
		return err
	}
	return meta.Put(keySchema, raw)
}

// checkFormat verifies that btx holds a psbase store this package can read.
func checkFormat(btx kv.Tx) error {
	meta := btx.Bucket(bucketMeta)
	if meta == nil {
		return errorf(ErrCorrupt, "not a psbase store: no %q bucket", bucketMeta)
	}
	f := meta.Get(keyFormat)
	if len(f) != 4 {
		return errorf(ErrCorrupt, "not a psbase store: no format version")
	}
	if v := binary.BigEndian.Uint32(f); v > FormatVersion || v == 0 {
		return errorf(ErrCorrupt, "format version %d is not supported by this psbase (it reads up to %d)", v, FormatVersion)
	}
	if btx.Bucket(bucketRecords) == nil || btx.Bucket(bucketIndexes) == nil {
		return errorf(ErrCorrupt, "not a psbase store: missing buckets")
	}
	return nil
}

func isBoltTimeout(err error) bool { return errors.Is(err, berrors.ErrTimeout) }

func isBoltFormatError(err error) bool {
	return errors.Is(err, berrors.ErrInvalid) || errors.Is(err, berrors.ErrVersionMismatch) ||
		errors.Is(err, berrors.ErrChecksum) || errors.Is(err, berrors.ErrInvalidMapping)
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
