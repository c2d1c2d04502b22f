package psbase

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
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

// Decode stores the record into dst, a pointer to a struct, through msgpack
// (so msgpack field tags apply). The record's ID and Version are offered as
// the keys "id" and "version", so a struct field tagged `msgpack:"id"`
// receives the ID.
func (r Record) Decode(dst any) error {
	m := make(map[string]any, len(r.Values)+2)
	for k, v := range r.Values {
		m[k] = v
	}
	m["id"] = r.ID
	m["version"] = r.Version
	b, err := msgpack.Marshal(m)
	if err != nil {
		return errorf(ErrSchema, "record %d does not encode: %v", r.ID, err)
	}
	if err := msgpack.Unmarshal(b, dst); err != nil {
		return errorf(ErrSchema, "record %d does not decode into %T: %v", r.ID, dst, err)
	}
	return nil
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

// encodeRecord encodes version and the values of live fields as the msgpack
// array [version, {fieldNum: value, ...}] followed by the CRC32C of those
// bytes (big-endian). Values must already be canonical (see normalize).
func encodeRecord(s *schema, version uint64, vals Values) ([]byte, error) {
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
	sum := crc32.Checksum(buf.Bytes(), castagnoli)
	var c [crcSize]byte
	binary.BigEndian.PutUint32(c[:], sum)
	buf.Write(c[:])
	return buf.Bytes(), nil
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
		return enc.EncodeBytes(v.([]byte))
	}
	return errorf(ErrSchema, "invalid type %d", t)
}

// decodeRecord checks the CRC and decodes a stored value. Values of retired
// field numbers are skipped; live fields missing from the record read back
// as their default. fields, if not nil, restricts the result to those names
// (a projection). Any failure is ErrCorrupt naming the record.
func decodeRecord(s *schema, id uint64, data []byte, fields map[string]bool) (Record, error) {
	if len(data) < crcSize+2 {
		return Record{}, errorf(ErrCorrupt, "record %d: value too short (%d bytes)", id, len(data))
	}
	body, sum := data[:len(data)-crcSize], binary.BigEndian.Uint32(data[len(data)-crcSize:])
	if got := crc32.Checksum(body, castagnoli); got != sum {
		return Record{}, errorf(ErrCorrupt, "record %d: CRC32C mismatch (stored %08x, computed %08x)", id, sum, got)
	}
	dec := msgpack.NewDecoder(bytes.NewReader(body))
	bad := func(what string, err error) (Record, error) {
		return Record{}, errorf(ErrCorrupt, "record %d: %s: %v", id, what, err)
	}
	n, err := dec.DecodeArrayLen()
	if err != nil || n != 2 {
		return bad("header", err)
	}
	version, err := dec.DecodeUint64()
	if err != nil {
		return bad("version", err)
	}
	m, err := dec.DecodeMapLen()
	if err != nil || m < 0 {
		return bad("field map", err)
	}
	rec := Record{ID: id, Version: version, Values: make(Values, len(s.Fields))}
	for range m {
		num, err := dec.DecodeUint32()
		if err != nil {
			return bad("field number", err)
		}
		i, live := s.byNum[num]
		if !live || (fields != nil && !fields[s.Fields[i].Name]) {
			if err := dec.Skip(); err != nil {
				return bad("value", err)
			}
			continue
		}
		f := &s.Fields[i]
		v, err := decodeValue(dec, f.Type)
		if err != nil {
			return bad("field "+f.Name, err)
		}
		rec.Values[f.Name] = v
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

func decodeValue(dec *msgpack.Decoder, t Type) (any, error) {
	c, err := dec.PeekCode()
	if err != nil {
		return nil, err
	}
	if c == 0xc0 { // msgpack nil
		return nil, dec.DecodeNil()
	}
	switch t {
	case String:
		return dec.DecodeString()
	case Int:
		return dec.DecodeInt64()
	case Float:
		return dec.DecodeFloat64()
	case Bool:
		return dec.DecodeBool()
	case Time:
		tm, err := dec.DecodeTime()
		return tm.UTC(), err
	case Bytes:
		b, err := dec.DecodeBytes()
		if b == nil && err == nil {
			b = []byte{}
		}
		return b, err
	}
	return nil, errorf(ErrCorrupt, "invalid type %d", t)
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
