package psbase

// wire.go: bounded reading of the msgpack that psbase stores. A record or a
// schema read from disk is untrusted: a damaged page, or anyone with write
// access to the file, can put any bytes there, even behind a valid CRC. So
// nothing here recurses, and no length or count is believed before it is
// checked against the bytes that remain: reading b costs O(len(b)) time and
// memory whatever b says. (msgpack's own Decoder recurses on nested arrays —
// six million of them overflow the stack — and pre-allocates what a length
// prefix claims: an array32 of 0xFFFFFFFF asked for 240 GB.)
//
// May touch: nothing; it reads byte slices.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

var errShort = errors.New("truncated msgpack")

// mpReader reads msgpack values from a byte slice.
type mpReader struct {
	b []byte
	i int
}

func (r *mpReader) left() int { return len(r.b) - r.i }

func (r *mpReader) take(n int) ([]byte, error) {
	if n < 0 || n > r.left() {
		return nil, errShort
	}
	p := r.b[r.i : r.i+n]
	r.i += n
	return p, nil
}

func (r *mpReader) byte1() (byte, error) {
	if r.i >= len(r.b) {
		return 0, errShort
	}
	c := r.b[r.i]
	r.i++
	return c, nil
}

func (r *mpReader) peek() (byte, error) {
	if r.i >= len(r.b) {
		return 0, errShort
	}
	return r.b[r.i], nil
}

func (r *mpReader) uintN(n int) (uint64, error) {
	p, err := r.take(n)
	if err != nil {
		return 0, err
	}
	var v uint64
	for _, c := range p {
		v = v<<8 | uint64(c)
	}
	return v, nil
}

// containerLen reads an array or map header and checks its count against
// the bytes left (each element needs at least one byte; a map entry two).
func (r *mpReader) containerLen(isMap bool) (int, error) {
	c, err := r.byte1()
	if err != nil {
		return 0, err
	}
	var n uint64
	switch {
	case !isMap && c >= 0x90 && c <= 0x9f:
		n = uint64(c & 0x0f)
	case isMap && c >= 0x80 && c <= 0x8f:
		n = uint64(c & 0x0f)
	case !isMap && c == 0xdc, isMap && c == 0xde:
		n, err = r.uintN(2)
	case !isMap && c == 0xdd, isMap && c == 0xdf:
		n, err = r.uintN(4)
	default:
		what := "array"
		if isMap {
			what = "map"
		}
		return 0, fmt.Errorf("want a msgpack %s, found code 0x%02x", what, c)
	}
	if err != nil {
		return 0, err
	}
	per := uint64(1)
	if isMap {
		per = 2
	}
	if n > uint64(r.left())/per {
		return 0, fmt.Errorf("msgpack count %d exceeds the %d bytes left", n, r.left())
	}
	return int(n), nil
}

// uint reads a non-negative integer in any msgpack integer form.
func (r *mpReader) uint() (uint64, error) {
	v, err := r.int64or()
	if err != nil {
		return 0, err
	}
	if v.neg {
		return 0, fmt.Errorf("negative integer %d where an unsigned one belongs", v.i)
	}
	return v.u, nil
}

type mpInt struct {
	neg bool
	i   int64  // when neg
	u   uint64 // when !neg
}

func (r *mpReader) int64or() (mpInt, error) {
	c, err := r.byte1()
	if err != nil {
		return mpInt{}, err
	}
	switch {
	case c <= 0x7f:
		return mpInt{u: uint64(c)}, nil
	case c >= 0xe0:
		return mpInt{neg: true, i: int64(int8(c))}, nil
	}
	var n int
	signed := false
	switch c {
	case 0xcc, 0xcd, 0xce, 0xcf:
		n = 1 << (c - 0xcc)
	case 0xd0, 0xd1, 0xd2, 0xd3:
		n, signed = 1<<(c-0xd0), true
	default:
		return mpInt{}, fmt.Errorf("want a msgpack integer, found code 0x%02x", c)
	}
	u, err := r.uintN(n)
	if err != nil {
		return mpInt{}, err
	}
	if !signed {
		return mpInt{u: u}, nil
	}
	shift := 64 - 8*uint(n)
	i := int64(u<<shift) >> shift
	if i >= 0 {
		return mpInt{u: uint64(i)}, nil
	}
	return mpInt{neg: true, i: i}, nil
}

// scalar reads one stored value for a field of type t (nil for msgpack nil).
// Containers and foreign extensions are refused: a record holds scalars only.
func (r *mpReader) scalar(t Type) (any, error) {
	c, err := r.peek()
	if err != nil {
		return nil, err
	}
	if c == 0xc0 {
		r.i++
		return nil, nil
	}
	switch t {
	case String:
		p, err := r.strOrBin(false)
		return string(p), err
	case Bytes:
		p, err := r.strOrBin(true)
		return append([]byte{}, p...), err
	case Int:
		v, err := r.int64or()
		if err != nil {
			return nil, err
		}
		if !v.neg {
			if v.u > math.MaxInt64 {
				return nil, fmt.Errorf("integer %d overflows int64", v.u)
			}
			return int64(v.u), nil
		}
		return v.i, nil
	case Float:
		r.i++
		switch c {
		case 0xcb:
			u, err := r.uintN(8)
			return math.Float64frombits(u), err
		case 0xca:
			u, err := r.uintN(4)
			return float64(math.Float32frombits(uint32(u))), err
		}
		return nil, fmt.Errorf("want a msgpack float, found code 0x%02x", c)
	case Bool:
		r.i++
		switch c {
		case 0xc2:
			return false, nil
		case 0xc3:
			return true, nil
		}
		return nil, fmt.Errorf("want a msgpack bool, found code 0x%02x", c)
	case Time:
		return r.timestamp()
	}
	return nil, fmt.Errorf("invalid field type %d", t)
}

// strOrBin reads a str (or, with bin, a bin) and returns its bytes, aliasing
// the input.
func (r *mpReader) strOrBin(bin bool) ([]byte, error) {
	c, err := r.byte1()
	if err != nil {
		return nil, err
	}
	var n uint64
	switch {
	case !bin && c >= 0xa0 && c <= 0xbf:
		n = uint64(c & 0x1f)
	case !bin && c == 0xd9, bin && c == 0xc4:
		n, err = r.uintN(1)
	case !bin && c == 0xda, bin && c == 0xc5:
		n, err = r.uintN(2)
	case !bin && c == 0xdb, bin && c == 0xc6:
		n, err = r.uintN(4)
	default:
		return nil, fmt.Errorf("want a msgpack %s, found code 0x%02x", map[bool]string{false: "str", true: "bin"}[bin], c)
	}
	if err != nil {
		return nil, err
	}
	if n > uint64(r.left()) {
		return nil, errShort
	}
	return r.take(int(n))
}

// timestamp reads msgpack's timestamp extension (type -1) in its 4, 8 and
// 12 byte forms.
func (r *mpReader) timestamp() (any, error) {
	c, err := r.byte1()
	if err != nil {
		return nil, err
	}
	var n int
	switch c {
	case 0xd6:
		n = 4
	case 0xd7:
		n = 8
	case 0xc7:
		l, err := r.byte1()
		if err != nil {
			return nil, err
		}
		n = int(l)
	default:
		return nil, fmt.Errorf("want a msgpack timestamp, found code 0x%02x", c)
	}
	typ, err := r.byte1()
	if err != nil {
		return nil, err
	}
	if int8(typ) != -1 {
		return nil, fmt.Errorf("extension type %d is not a timestamp", int8(typ))
	}
	p, err := r.take(n)
	if err != nil {
		return nil, err
	}
	var sec int64
	var nsec uint32
	switch n {
	case 4:
		sec = int64(binary.BigEndian.Uint32(p))
	case 8:
		d := binary.BigEndian.Uint64(p)
		nsec, sec = uint32(d>>34), int64(d&(1<<34-1))
	case 12:
		nsec, sec = binary.BigEndian.Uint32(p), int64(binary.BigEndian.Uint64(p[4:]))
	default:
		return nil, fmt.Errorf("timestamp of %d bytes", n)
	}
	if nsec >= 1e9 {
		return nil, fmt.Errorf("timestamp nanoseconds %d out of range", nsec)
	}
	return time.Unix(sec, int64(nsec)).UTC(), nil
}

// skipScalar skips a value of a retired field: any scalar, never a container.
func (r *mpReader) skipScalar() error {
	c, err := r.peek()
	if err != nil {
		return err
	}
	switch {
	case c == 0xc0, c == 0xc2, c == 0xc3, c <= 0x7f, c >= 0xe0:
		r.i++
		return nil
	case c >= 0xa0 && c <= 0xbf, c == 0xd9, c == 0xda, c == 0xdb:
		_, err := r.strOrBin(false)
		return err
	case c == 0xc4, c == 0xc5, c == 0xc6:
		_, err := r.strOrBin(true)
		return err
	case c >= 0xcc && c <= 0xcf, c >= 0xd0 && c <= 0xd3:
		_, err := r.int64or()
		return err
	case c == 0xca:
		_, err := r.take(5)
		return err
	case c == 0xcb:
		_, err := r.take(9)
		return err
	case c == 0xd6, c == 0xd7, c == 0xc7:
		_, err := r.timestamp()
		return err
	}
	return fmt.Errorf("a record value must be a scalar, found code 0x%02x", c)
}

// validateMsgpack checks, without recursion and without allocating more
// than a small stack, that b is exactly one well-formed msgpack value nested
// at most maxDepth deep, every length inside the bytes that remain. Only then
// may a general decoder (msgpack.Unmarshal) be given b.
func validateMsgpack(b []byte, maxDepth int) error {
	r := &mpReader{b: b}
	pending := []int{1} // values still to read at each open level
	for len(pending) > 0 {
		top := len(pending) - 1
		if pending[top] == 0 {
			pending = pending[:top]
			continue
		}
		pending[top]--
		c, err := r.peek()
		if err != nil {
			return err
		}
		var n int
		isMap := false
		switch {
		case c >= 0x80 && c <= 0x8f, c == 0xde, c == 0xdf:
			isMap = true
			fallthrough
		case c >= 0x90 && c <= 0x9f, c == 0xdc, c == 0xdd:
			if n, err = r.containerLen(isMap); err != nil {
				return err
			}
			if isMap {
				n *= 2
			}
			if len(pending) > maxDepth {
				return fmt.Errorf("msgpack nested deeper than %d", maxDepth)
			}
			pending = append(pending, n)
			continue
		case c == 0xd4, c == 0xd5, c == 0xd8, c == 0xc8, c == 0xc9:
			// other fixed or sized extensions: skip by their length
			r.i++
			var l uint64
			switch c {
			case 0xd4:
				l = 1
			case 0xd5:
				l = 2
			case 0xd8:
				l = 16
			case 0xc8:
				l, err = r.uintN(2)
			case 0xc9:
				l, err = r.uintN(4)
			}
			if err == nil {
				_, err = r.take(int(min(l+1, uint64(math.MaxInt32))))
			}
			if err != nil {
				return err
			}
			continue
		}
		if c == 0xc7 { // ext8: maybe not a timestamp
			r.i++
			l, err := r.byte1()
			if err == nil {
				_, err = r.take(int(l) + 1)
			}
			if err != nil {
				return err
			}
			continue
		}
		if err := r.skipScalar(); err != nil {
			return err
		}
	}
	if r.left() != 0 {
		return fmt.Errorf("%d bytes after the msgpack value", r.left())
	}
	return nil
}
