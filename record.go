package psbase

// May touch: nothing (the record codec in memory).

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"reflect"
	"sort"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Record is one row of the table as read from the store.
//
// ID is assigned by Insert from a persistent sequence and never reused, even
// after deletes and Cleanup. Version starts at 1 and grows by one on every
// update; Update refuses a record whose Version is no longer the stored one
// (ErrConflict), which is what makes read-then-write from separate calls safe.
// Values holds every live field of the schema (records written before an
// AddField read back that field's default), or only the projected ones.
type Record struct {
	ID      uint64
	Version uint64
	Values  Values
}

// Decode stores the record into dst, a pointer to a struct. Struct fields
// are matched to record fields by the naming rule: a `psbase:"name"` tag,
// else a msgpack tag, else a json tag, else the Go field name, exactly and
// then without regard to case; embedded structs are flattened. The field
// that maps to "id" receives the record's ID, "version" its Version. Values
// convert between Go types of one kind (int64 into an int32 field, say) and
// one that does not fit is an error, as is a struct none of whose fields
// matches one of the record's: psbase never decodes silently into nothing.
// Fields the record does not have (a projection) are left as they are.
func (r Record) Decode(dst any) error {
	rv := reflect.ValueOf(dst)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return errorf(ErrSchema, "Decode wants a non-nil pointer to a struct, not %T", dst)
	}
	rv = rv.Elem()
	if rv.Kind() != reflect.Struct || rv.Type() == timeType {
		return errorf(ErrSchema, "Decode wants a pointer to a struct, not %T", dst)
	}
	return r.decodeStruct(rv)
}

// castagnoli is the CRC32C table; its polynomial has hardware support.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crcSize is the length of the CRC32C that ends every record value.
const crcSize = 4

// idKey encodes a record ID as a bbolt key: big-endian, so keys sort by ID.
func idKey(id uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], id)
	return k[:]
}

// lookupKey is idKey for a key the storage only reads during the call (Get,
// Seek, Delete; the seam's contract says they keep no reference to it): it
// reuses the transaction's own buffer, so the key does not escape to the heap
// through the seam's interface call, one allocation per lookup that calling
// bbolt directly would not make. Never for Put, whose key bbolt keeps until
// commit. The slice is valid until the next lookupKey on the same Tx.
func (tx *Tx) lookupKey(id uint64) []byte {
	binary.BigEndian.PutUint64(tx.lookup[:], id)
	return tx.lookup[:]
}

// encodeRecord encodes version and the values of live fields as the msgpack
// array [version, {fieldNum: value, ...}] followed by a CRC32C (big-endian).
// In format 2 and later the CRC covers the record's ID (its 8-byte key)
// followed by those bytes, so a value that ends up under another key — a
// stale page copied where another belonged — fails its check; in format 1 it
// covers the bytes alone. Values must already be canonical (see normalize).
func encodeRecord(s *schema, format uint32, id, version uint64, vals Values) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(64)
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	_ = enc.EncodeArrayLen(2)
	_ = enc.EncodeUint(version)
	n := 0
	for _, f := range s.Fields {
		if _, ok := vals[f.Name]; ok {
			n++
		}
	}
	_ = enc.EncodeMapLen(n)
	for i := range s.Fields {
		f := &s.Fields[i]
		v, ok := vals[f.Name]
		if !ok {
			continue
		}
		_ = enc.EncodeUint(uint64(f.Num))
		if err := encodeValue(enc, f.Type, v); err != nil {
			return nil, err
		}
	}
	var c [crcSize]byte
	binary.BigEndian.PutUint32(c[:], recordCRC(format, id, buf.Bytes()))
	buf.Write(c[:])
	return buf.Bytes(), nil
}

// recordCRC is the checksum stored after a record's body (see encodeRecord).
func recordCRC(format uint32, id uint64, body []byte) uint32 {
	if format < 2 {
		return crc32.Checksum(body, castagnoli)
	}
	// The key's 8 bytes through the table by hand: handing a stack array to
	// crc32 moves it to the heap (its fast path is a function value), one
	// allocation per record read or written.
	crc := ^uint32(0)
	for shift := 56; shift >= 0; shift -= 8 {
		crc = castagnoli[byte(crc)^byte(id>>shift)] ^ crc>>8
	}
	return crc32.Update(^crc, castagnoli, body)
}

func encodeValue(enc *msgpack.Encoder, t Type, v any) error {
	if v == nil {
		return enc.EncodeNil()
	}
	switch t {
	case String:
		return enc.EncodeString(v.(string))
	case Int:
		return enc.EncodeInt(v.(int64))
	case Float:
		return enc.EncodeFloat64(v.(float64))
	case Bool:
		return enc.EncodeBool(v.(bool))
	case Time:
		return enc.EncodeTime(v.(time.Time))
	case Bytes:
		b := v.([]byte)
		if b == nil {
			b = []byte{} // msgpack writes a nil slice as nil: the empty value is not null
		}
		return enc.EncodeBytes(b)
	}
	return errorf(ErrSchema, "invalid type %d", t)
}

// decodeRecord checks the CRC and decodes a stored value (see wire.go: the
// bytes are untrusted, reading them is bounded). Values of retired field
// numbers are skipped; live fields missing from the record read back as
// their default. fields, if not nil, restricts the result to those names (a
// projection). Any failure is ErrCorrupt naming the record.
func decodeRecord(s *schema, format uint32, id uint64, data []byte, fields map[string]bool) (Record, error) {
	if len(data) < crcSize+2 {
		return Record{}, errorf(ErrCorrupt, "record %d: value too short (%d bytes)", id, len(data))
	}
	body, sum := data[:len(data)-crcSize], binary.BigEndian.Uint32(data[len(data)-crcSize:])
	if got := recordCRC(format, id, body); got != sum {
		return Record{}, errorf(ErrCorrupt, "record %d: CRC32C mismatch (stored %08x, computed %08x)", id, sum, got)
	}
	r := &mpReader{b: body}
	bad := func(what string, err error) (Record, error) {
		return Record{}, errorf(ErrCorrupt, "record %d: %s: %v", id, what, err)
	}
	n, err := r.containerLen(false)
	if err != nil || n != 2 {
		if err == nil {
			err = fmt.Errorf("array of %d, want 2", n)
		}
		return bad("header", err)
	}
	version, err := r.uint()
	if err != nil {
		return bad("version", err)
	}
	m, err := r.containerLen(true)
	if err != nil {
		return bad("field map", err)
	}
	rec := Record{ID: id, Version: version, Values: make(Values, len(s.Fields))}
	for range m {
		num, err := r.uint()
		if err != nil || num > math.MaxUint32 {
			if err == nil {
				err = fmt.Errorf("%d", num)
			}
			return bad("field number", err)
		}
		i, live := s.byNum[uint32(num)]
		if !live || (fields != nil && !fields[s.Fields[i].Name]) {
			if err := r.skipScalar(); err != nil {
				return bad("value", err)
			}
			continue
		}
		f := &s.Fields[i]
		v, err := r.scalar(f.Type)
		if err != nil {
			return bad("field "+f.Name, err)
		}
		if _, dup := rec.Values[f.Name]; dup {
			return bad("field "+f.Name, errors.New("stored twice"))
		}
		rec.Values[f.Name] = v
	}
	if r.left() != 0 {
		return bad("body", fmt.Errorf("%d bytes after the field map", r.left()))
	}
	for i := range s.Fields {
		f := &s.Fields[i]
		if fields != nil && !fields[f.Name] {
			continue
		}
		if _, ok := rec.Values[f.Name]; !ok {
			rec.Values[f.Name] = cloneValue(f.Default)
		}
	}
	return rec, nil
}

// cloneValue copies mutable values (bytes) so records never share memory
// with the schema's defaults.
func cloneValue(v any) any {
	if b, ok := v.([]byte); ok {
		return bytes.Clone(b)
	}
	return v
}

// sortedNames returns the keys of vals in order, for stable error messages.
func sortedNames(vals Values) []string {
	out := make([]string, 0, len(vals))
	for k := range vals {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
