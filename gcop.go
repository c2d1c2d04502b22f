package psbase

// May touch: nothing (encodings in memory); applyOp runs record operations on the Tx it is handed.

// gcop.go: the single operations that group commit carries as data through
// the queue beside the store (groupcommit.go), and their results, in a small
// binary encoding. Any process that can write the queue file can forge a
// payload, so decoding is bounded: every length is checked against the
// bytes that remain before anything is allocated, and nothing nests.
//
// Values travel in their canonical Go forms (int64, uint64, float64, string,
// []byte, time.Time, bool, nil, json.Number), which is what the record layer
// normalizes every accepted input to anyway; the combiner runs the ordinary
// record operations on them, against the schema it reads in its own
// transaction, so a combined operation is validated exactly as a direct one.
// A value of any other Go type makes the operation travel the direct path.

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"time"
)

// gcKind is the operation a slot carries.
type gcKind uint8

const (
	gcInsert     gcKind = 1 + iota // Insert(vals)
	gcUpdate                       // Update(Record{ID: id, Version: version}, vals)
	gcUpdateByID                   // UpdateByID(id, vals)
	gcDelete                       // Delete(ids...)
	gcUpsert                       // Upsert(key, vals)
	gcAddInt                       // Add(id, key, delta)
	gcAddFloat                     // AddFloat(id, key, delta)
	gcKindEnd
)

var gcKindNames = [...]string{gcInsert: "insert", gcUpdate: "update", gcUpdateByID: "update", gcDelete: "delete",
	gcUpsert: "upsert", gcAddInt: "add", gcAddFloat: "add"}

func (k gcKind) String() string {
	if k > 0 && k < gcKindEnd {
		return gcKindNames[k]
	}
	return fmt.Sprintf("op%d", k)
}

// gcOp is one operation.
type gcOp struct {
	kind    gcKind
	id      uint64
	version uint64
	key     string // Upsert's key field, Add's field
	idelta  int64
	fdelta  float64
	vals    Values
	ids     []uint64
}

// gcResult is an operation's outcome.
type gcResult struct {
	err      error // nil, or the operation's own error
	id       uint64
	inserted bool
	n        int
	rec      Record  // Update, UpdateByID
	ival     int64   // AddInt
	fval     float64 // AddFloat
}

// errNotCombinable: the operation cannot travel as data (a value of a type
// the encoding does not carry, or too large for a slot); it runs directly.
var errNotCombinable = errors.New("not combinable")

// Value tags.
const (
	gvNil byte = iota
	gvFalse
	gvTrue
	gvInt
	gvUint
	gvFloat
	gvString
	gvBytes
	gvTime
	gvNumber
)

// gcWriter appends to a bounded buffer.
type gcWriter struct {
	b   []byte
	max int
	err error
}

func (w *gcWriter) room(n int) bool {
	if w.err == nil && len(w.b)+n > w.max {
		w.err = errNotCombinable
	}
	return w.err == nil
}

func (w *gcWriter) u8(v byte) {
	if w.room(1) {
		w.b = append(w.b, v)
	}
}

func (w *gcWriter) u64(v uint64) {
	if w.room(8) {
		w.b = binary.LittleEndian.AppendUint64(w.b, v)
	}
}

func (w *gcWriter) str(s string) {
	if len(s) > math.MaxUint32 {
		w.err = errNotCombinable
	}
	if w.room(4 + len(s)) {
		w.b = binary.LittleEndian.AppendUint32(w.b, uint32(len(s)))
		w.b = append(w.b, s...)
	}
}

func (w *gcWriter) value(v any) {
	switch x := v.(type) {
	case nil:
		w.u8(gvNil)
		return
	case bool:
		if x {
			w.u8(gvTrue)
		} else {
			w.u8(gvFalse)
		}
		return
	case string:
		w.u8(gvString)
		w.str(x)
		return
	case []byte:
		w.u8(gvBytes)
		w.str(string(x))
		return
	case time.Time:
		b, err := x.MarshalBinary()
		if err != nil {
			w.err = errNotCombinable
			return
		}
		w.u8(gvTime)
		w.str(string(b))
		return
	case json.Number:
		w.u8(gvNumber)
		w.str(string(x))
		return
	}
	// Other widths and named types, by kind, as normalizeReflect reads
	// them; pointers are followed.
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			w.u8(gvNil)
			return
		}
		rv = rv.Elem()
	}
	switch rv.Kind() {
	case reflect.Bool:
		w.value(rv.Bool())
	case reflect.String:
		w.value(rv.String())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		w.u8(gvInt)
		w.u64(uint64(rv.Int()))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		w.u8(gvUint)
		w.u64(rv.Uint())
	case reflect.Float32, reflect.Float64:
		w.u8(gvFloat)
		w.u64(math.Float64bits(rv.Float()))
	case reflect.Slice:
		if rv.Type().Elem().Kind() == reflect.Uint8 {
			w.value(rv.Bytes())
			return
		}
		w.err = errNotCombinable
	default:
		if t, ok := rv.Interface().(time.Time); ok {
			w.value(t)
			return
		}
		w.err = errNotCombinable
	}
}

func (w *gcWriter) values(vals Values) {
	if len(vals) > math.MaxUint16 {
		w.err = errNotCombinable
		return
	}
	w.u64(uint64(len(vals)))
	for _, k := range sortedNames(vals) {
		w.str(k)
		w.value(vals[k])
	}
}

// encodeOp encodes op into at most max bytes, or returns errNotCombinable.
func encodeOp(op *gcOp, max int) ([]byte, error) {
	w := &gcWriter{b: make([]byte, 0, 128), max: max}
	w.u8(byte(op.kind))
	w.u64(op.id)
	w.u64(op.version)
	w.str(op.key)
	w.u64(uint64(op.idelta))
	w.u64(math.Float64bits(op.fdelta))
	w.values(op.vals)
	w.u64(uint64(len(op.ids)))
	for _, id := range op.ids {
		w.u64(id)
	}
	return w.b, w.err
}

// gcReader reads a bounded buffer; the first error sticks.
type gcReader struct {
	b   []byte
	err error
}

var errBadPayload = errorf(ErrCorrupt, "a group-commit queue entry does not decode (the queue file was damaged or forged)")

func (r *gcReader) need(n int) bool {
	if r.err == nil && (n < 0 || n > len(r.b)) {
		r.err = errBadPayload
	}
	return r.err == nil
}

func (r *gcReader) u8() byte {
	if !r.need(1) {
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *gcReader) u64() uint64 {
	if !r.need(8) {
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *gcReader) bytes() []byte {
	if !r.need(4) {
		return nil
	}
	n := int(binary.LittleEndian.Uint32(r.b))
	r.b = r.b[4:]
	if !r.need(n) {
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *gcReader) value() any {
	switch tag := r.u8(); tag {
	case gvNil:
		return nil
	case gvFalse:
		return false
	case gvTrue:
		return true
	case gvInt:
		return int64(r.u64())
	case gvUint:
		return r.u64()
	case gvFloat:
		return math.Float64frombits(r.u64())
	case gvString:
		return string(r.bytes())
	case gvBytes:
		return append([]byte{}, r.bytes()...)
	case gvTime:
		b := r.bytes()
		var t time.Time
		if r.err == nil {
			if err := t.UnmarshalBinary(b); err != nil {
				r.err = errBadPayload
			}
		}
		return t
	case gvNumber:
		return json.Number(r.bytes())
	default:
		r.err = errBadPayload
		return nil
	}
}

func (r *gcReader) values() Values {
	n := r.u64()
	// Each entry is at least a name length and a tag.
	if !r.need(int(min(n, uint64(len(r.b)+1))) * 5) {
		return nil
	}
	if n == 0 {
		return nil
	}
	vals := make(Values, n)
	for range n {
		k := string(r.bytes())
		v := r.value()
		if r.err != nil {
			return nil
		}
		vals[k] = v
	}
	return vals
}

// decodeOp decodes a payload of encodeOp.
func decodeOp(b []byte) (*gcOp, error) {
	r := &gcReader{b: b}
	op := &gcOp{kind: gcKind(r.u8())}
	op.id = r.u64()
	op.version = r.u64()
	op.key = string(r.bytes())
	op.idelta = int64(r.u64())
	op.fdelta = math.Float64frombits(r.u64())
	op.vals = r.values()
	n := r.u64()
	if r.need(int(min(n, uint64(len(r.b)+1))) * 8) {
		op.ids = make([]uint64, n)
		for i := range op.ids {
			op.ids[i] = r.u64()
		}
	}
	if r.err == nil && (op.kind == 0 || op.kind >= gcKindEnd || len(r.b) != 0) {
		r.err = errBadPayload
	}
	if r.err != nil {
		return nil, r.err
	}
	return op, nil
}

// encodeResult encodes res into at most max bytes; errNotCombinable if it
// does not fit (a large record returned by Update).
func encodeResult(res *gcResult, max int) ([]byte, error) {
	w := &gcWriter{b: make([]byte, 0, 64), max: max}
	code, msg := errorCode(res.err)
	w.u8(code)
	w.str(msg)
	var de *DuplicateError
	var ce *ConflictError
	switch {
	case errors.As(res.err, &de):
		w.u8(1)
		w.str(de.Field)
		w.value(de.Value)
		w.u64(de.ExistingID)
	case errors.As(res.err, &ce):
		w.u8(2)
		w.u64(ce.ID)
		w.u64(ce.Have)
		w.u64(ce.Want)
	default:
		w.u8(0)
	}
	w.u64(res.id)
	if res.inserted {
		w.u8(1)
	} else {
		w.u8(0)
	}
	w.u64(uint64(res.n))
	w.u64(res.rec.ID)
	w.u64(res.rec.Version)
	w.values(res.rec.Values)
	w.u64(uint64(res.ival))
	w.u64(math.Float64bits(res.fval))
	return w.b, w.err
}

// decodeResult decodes a result of encodeResult.
func decodeResult(b []byte) (*gcResult, error) {
	r := &gcReader{b: b}
	res := &gcResult{}
	code := r.u8()
	msg := string(r.bytes())
	res.err = errorOfCode(code, msg)
	switch r.u8() {
	case 0:
	case 1:
		e := &DuplicateError{Field: string(r.bytes())}
		e.Value = r.value()
		e.ExistingID = r.u64()
		res.err = e
	case 2:
		res.err = &ConflictError{ID: r.u64(), Have: r.u64(), Want: r.u64()}
	default:
		r.err = errBadPayload
	}
	res.id = r.u64()
	res.inserted = r.u8() == 1
	res.n = int(r.u64())
	res.rec.ID = r.u64()
	res.rec.Version = r.u64()
	res.rec.Values = r.values()
	res.ival = int64(r.u64())
	res.fval = math.Float64frombits(r.u64())
	if r.err == nil && len(r.b) != 0 {
		r.err = errBadPayload
	}
	if r.err != nil {
		return nil, r.err
	}
	if res.rec.Values == nil && res.rec.ID != 0 {
		res.rec.Values = Values{}
	}
	return res, nil
}

// errorCode turns an operation's error into its sentinel's number in
// sentinels (1-based; 0 is no error, 255 an error of no sentinel) and its
// message, so that the submitter gets an error that reads and matches as
// the direct path's does.
func errorCode(err error) (byte, string) {
	if err == nil {
		return 0, ""
	}
	err = classifyIOError(err)
	for i, s := range sentinels {
		if errors.Is(err, s) {
			return byte(i + 1), err.Error()
		}
	}
	return 255, err.Error()
}

func errorOfCode(code byte, msg string) error {
	switch {
	case code == 0:
		return nil
	case int(code) <= len(sentinels):
		return &combinedError{sentinel: sentinels[code-1], msg: msg}
	}
	return errors.New(msg)
}

// combinedError is an operation's error as the combiner reported it: its
// message, matching its sentinel.
type combinedError struct {
	sentinel error
	msg      string
}

func (e *combinedError) Error() string { return e.msg }
func (e *combinedError) Unwrap() error { return e.sentinel }

// applyOp runs op in tx, the combiner's transaction.
func applyOp(tx *Tx, op *gcOp) *gcResult {
	res := &gcResult{}
	switch op.kind {
	case gcInsert:
		res.id, res.err = tx.Insert(op.vals)
	case gcUpdate:
		res.rec, res.err = tx.Update(Record{ID: op.id, Version: op.version}, op.vals)
	case gcUpdateByID:
		res.rec, res.err = tx.UpdateByID(op.id, op.vals)
	case gcDelete:
		res.n, res.err = tx.Delete(op.ids...)
	case gcUpsert:
		res.id, res.inserted, res.err = tx.Upsert(op.key, op.vals)
	case gcAddInt:
		res.ival, res.err = tx.Add(op.id, op.key, op.idelta)
	case gcAddFloat:
		res.fval, res.err = tx.AddFloat(op.id, op.key, op.fdelta)
	default:
		res.err = errBadPayload
	}
	return res
}

// refusedBeforeWrite reports whether err is one of the refusals the record
// operations make before their first write (records.go), so that the
// operation fails alone and the rest of its batch stands.
func refusedBeforeWrite(err error) bool {
	return errors.Is(err, ErrSchema) || errors.Is(err, ErrNotFound) ||
		errors.Is(err, ErrConflict) || errors.Is(err, ErrDuplicate)
}
