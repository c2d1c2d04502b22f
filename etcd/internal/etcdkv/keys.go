// Package etcdkv implements psbase's storage seam (internal/kv) on an etcd
// cluster: a read-only Tx reads one snapshot (one revision), a writable Tx
// runs under the store's lock (an etcd concurrency.Mutex on a session
// lease), buffers its writes with read-your-writes, and commits them as one
// etcd transaction fenced on the lock key. The key layout is in
// etcd/FORMAT.md; this file is its one implementation.
//
// May touch: nothing (key names only).
package etcdkv

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// layout names the keys of one store; every key starts with prefix,
// "<name>/".
type layout struct{ prefix string }

// encPath encodes a bucket path: each name in lowercase hex followed by
// "/". The encoding is prefix-free and keeps names' bytes.Compare order,
// and its alphabet [0-9a-f/] never holds ':', which ends a data prefix.
func encPath(path [][]byte) string {
	var b strings.Builder
	for _, n := range path {
		b.WriteString(hex.EncodeToString(n))
		b.WriteByte('/')
	}
	return b.String()
}

// decName decodes one encoded path component (without its "/").
func decName(s string) ([]byte, error) { return hex.DecodeString(s) }

// marker is the key whose presence says the bucket exists.
func (l layout) marker(path [][]byte) string { return l.prefix + "b/" + encPath(path) }

// seq is the key of the bucket's sequence (a decimal number).
func (l layout) seq(path [][]byte) string { return l.prefix + "s/" + encPath(path) }

// data is the prefix of the bucket's own keys: data(path)+key.
func (l layout) data(path [][]byte) string { return l.prefix + "d/" + encPath(path) + ":" }

// subtree returns the three prefixes that hold a bucket, its nested buckets
// and everything in them (DeleteBucket clears them).
func (l layout) subtree(path [][]byte) []string {
	e := encPath(path)
	return []string{l.prefix + "b/" + e, l.prefix + "s/" + e, l.prefix + "d/" + e}
}

// lockPrefix is the concurrency.Mutex's prefix (its keys are
// "<name>/lock/<lease in hex>").
func (l layout) lockPrefix() string { return l.prefix + "lock" }

// holderKey is the holder record of the session with lease id.
func (l layout) holderKey(lease int64) string { return fmt.Sprintf("%sholder/%x", l.prefix, lease) }

// rangeEnd is the end (exclusive) of the range of keys starting with p.
func rangeEnd(p string) string {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return "\x00" // etcd's "to the end of the keyspace"
}

// validName checks a store name: non-empty, at most 200 bytes, and without
// '/' so that no store's prefix is inside another's.
func validName(name string) error {
	if name == "" || len(name) > 200 || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("store name %q: want 1 to 200 bytes without '/'", name)
	}
	return nil
}
