package psbase

// May touch: nothing (pure encoding).

import (
	"bytes"
	"encoding/binary"
	"math"
	"strings"
	"time"
)

// orderkey.go: the order-preserving encoding of index keys. For any two
// values a, b of one field, bytes.Compare(orderKey(a), orderKey(b)) has the
// sign of compareNullable(a, b), so range scans are plain bbolt cursor walks.
// The encoding is also prefix-free (no value's key is a prefix of another's),
// so an index entry orderKey(v) || bigEndian(ID) can be split and sought
// exactly.
//
//	null          0x00
//	non-null      0x01 then, by type:
//	  int         8 bytes big-endian of v XOR 1<<63 (negatives first)
//	  float       8 bytes: NaN → 0; -0 as +0; positives with the sign bit
//	              set, negatives with every bit flipped
//	  bool        0x00 / 0x01
//	  time        8 bytes of Unix seconds XOR 1<<63, 4 bytes of nanoseconds
//	  string/bytes the bytes with 0x00 escaped as 0x00 0xFF, then 0x00 0x01

const (
	keyNull    = 0x00
	keyNonNull = 0x01
)

// orderKey appends the encoding of canonical value v of type t to dst.
func orderKey(dst []byte, t Type, v any) []byte {
	if v == nil {
		return append(dst, keyNull)
	}
	dst = append(dst, keyNonNull)
	switch t {
	case Int:
		return binary.BigEndian.AppendUint64(dst, uint64(v.(int64))^(1<<63))
	case Float:
		return binary.BigEndian.AppendUint64(dst, floatBits(v.(float64)))
	case Bool:
		if v.(bool) {
			return append(dst, 1)
		}
		return append(dst, 0)
	case Time:
		tm := v.(time.Time)
		dst = binary.BigEndian.AppendUint64(dst, uint64(tm.Unix())^(1<<63))
		return binary.BigEndian.AppendUint32(dst, uint32(tm.Nanosecond()))
	case String:
		return appendEscaped(dst, v.(string))
	case Bytes:
		return appendEscaped(dst, v.([]byte))
	}
	return dst
}

func floatBits(f float64) uint64 {
	switch {
	case math.IsNaN(f):
		return 0 // below -Inf, like compareValues
	case f == 0:
		f = 0 // -0 sorts (and compares) equal to +0
	}
	b := math.Float64bits(f)
	if b&(1<<63) != 0 {
		return ^b
	}
	return b | 1<<63
}

func appendEscaped[S string | []byte](dst []byte, s S) []byte {
	for i := 0; i < len(s); i++ {
		dst = append(dst, s[i])
		if s[i] == 0 {
			dst = append(dst, 0xFF)
		}
	}
	return append(dst, 0x00, 0x01)
}

// prefixKey is the key prefix shared by every string (or bytes) starting
// with p: its escaped bytes without the terminator.
func prefixKey(p []byte) []byte {
	k := appendEscaped([]byte{keyNonNull}, p)
	return k[:len(k)-2]
}

// successor returns the smallest key greater than every key that starts
// with prefix, or nil when there is none (all 0xFF).
func successor(prefix []byte) []byte {
	for i := len(prefix) - 1; i >= 0; i-- {
		if prefix[i] != 0xFF {
			s := append([]byte(nil), prefix[:i+1]...)
			s[i]++
			return s
		}
	}
	return nil
}

// orderKeyLen is len(orderKey(nil, t, v)), without building the key.
func orderKeyLen(t Type, v any) int {
	if v == nil {
		return 1
	}
	escaped := func(n, zeros int) int { return 1 + n + zeros + 2 }
	switch t {
	case Int, Float:
		return 9
	case Bool:
		return 2
	case Time:
		return 13
	case String:
		s := v.(string)
		return escaped(len(s), strings.Count(s, "\x00"))
	case Bytes:
		b := v.([]byte)
		return escaped(len(b), bytes.Count(b, []byte{0}))
	}
	return 1
}
