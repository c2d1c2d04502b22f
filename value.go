package psbase

// May touch: nothing (value normalization in memory).

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"
)

// Values maps field names to values: the input of Insert and Update, and the
// fields of a Record.
type Values map[string]any

// zeroValue is the canonical zero of a type.
func zeroValue(t Type) any {
	switch t {
	case String:
		return ""
	case Int:
		return int64(0)
	case Float:
		return float64(0)
	case Bool:
		return false
	case Time:
		return time.Time{}.UTC()
	case Bytes:
		return []byte{}
	}
	return nil
}

// normalize converts v to the canonical Go form of f's type, or returns an
// ErrSchema error naming the field, the expected type and what it got. Any
// Go integer kind is accepted for Int (and Float); a float is accepted for
// Int only when it is integral and in range (JSON numbers); time.Time is kept
// in UTC at nanosecond precision; []byte is copied, and a nil []byte is the
// empty value (only an untyped nil is null).
//
// Two rules keep every stored value faithful through any encoding (JSON
// export and import among them): a String holds valid UTF-8 (arbitrary
// bytes belong in a Bytes field), and a Time lies in the years 0000–9999
// (the range of RFC 3339). Both are refused on write, before anything is
// written.
func normalize(f *fieldDef, v any) (any, error) {
	n, err := normalizeType(f, v)
	if err != nil || n == nil {
		return n, err
	}
	switch x := n.(type) {
	case string:
		if !utf8.ValidString(x) {
			return nil, errorf(ErrSchema, "field %q: the string is not valid UTF-8 (store arbitrary bytes in a bytes field)", f.Name)
		}
	case time.Time:
		if y := x.Year(); y < 0 || y > 9999 {
			return nil, errorf(ErrSchema, "field %q: year %d is outside 0000-9999", f.Name, y)
		}
	case []byte:
		if x == nil {
			return []byte{}, nil
		}
	}
	return n, nil
}

func normalizeType(f *fieldDef, v any) (any, error) {
	if v == nil {
		if f.Nullable {
			return nil, nil
		}
		return nil, errorf(ErrSchema, "field %q is not nullable", f.Name)
	}
	switch x := v.(type) { // fast paths for the canonical forms
	case string:
		if f.Type == String {
			return x, nil
		}
	case int64:
		switch f.Type {
		case Int:
			return x, nil
		case Float:
			return float64(x), nil
		}
	case int:
		switch f.Type {
		case Int:
			return int64(x), nil
		case Float:
			return float64(x), nil
		}
	case float64:
		switch f.Type {
		case Float:
			return x, nil
		case Int:
			if x == math.Trunc(x) && x >= -(1<<63) && x < 1<<63 {
				return int64(x), nil
			}
		}
	case bool:
		if f.Type == Bool {
			return x, nil
		}
	case time.Time:
		if f.Type == Time {
			return x.UTC(), nil
		}
	case []byte:
		if f.Type == Bytes {
			return bytes.Clone(x), nil
		}
	case json.Number:
		switch f.Type {
		case Int:
			if n, err := x.Int64(); err == nil {
				return n, nil
			}
		case Float:
			if n, err := x.Float64(); err == nil {
				return n, nil
			}
		}
	}
	return normalizeReflect(f, v)
}

// normalizeReflect handles named types, other integer widths and pointers.
func normalizeReflect(f *fieldDef, v any) (any, error) {
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return normalize(f, nil)
		}
		rv = rv.Elem()
	}
	switch f.Type {
	case String:
		if rv.Kind() == reflect.String {
			return rv.String(), nil
		}
	case Int, Float:
		switch rv.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			if f.Type == Float {
				return float64(rv.Int()), nil
			}
			return rv.Int(), nil
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
			u := rv.Uint()
			if f.Type == Float {
				return float64(u), nil
			}
			if u > math.MaxInt64 {
				return nil, errorf(ErrSchema, "field %q: %d overflows int64", f.Name, u)
			}
			return int64(u), nil
		case reflect.Float32, reflect.Float64:
			x := rv.Float()
			if f.Type == Float {
				return x, nil
			}
			if x == math.Trunc(x) && x >= -(1<<63) && x < 1<<63 {
				return int64(x), nil
			}
		}
	case Bool:
		if rv.Kind() == reflect.Bool {
			return rv.Bool(), nil
		}
	case Time:
		if t, ok := rv.Interface().(time.Time); ok {
			return t.UTC(), nil
		}
	case Bytes:
		if rv.Kind() == reflect.Slice && rv.Type().Elem().Kind() == reflect.Uint8 {
			return bytes.Clone(rv.Bytes()), nil
		}
	}
	return nil, errorf(ErrSchema, "field %q wants %s, got %T (%s)", f.Name, f.Type, v, shortValue(v))
}

// shortValue renders a value for an error message, cut to 40 characters.
func shortValue(v any) string {
	s := strings.TrimSpace(strings.ReplaceAll(fmtValue(v), "\n", " "))
	if len(s) > 40 {
		s = s[:37] + "..."
	}
	return s
}

func fmtValue(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return reflect.TypeOf(v).String()
	}
	return string(b)
}

// toValues turns the input of Insert/Update into a Values map: a Values or
// map[string]any as it is, a struct or pointer to struct by the naming rule
// of structmap.go. fromStruct tells the caller that the names may differ from
// the schema's in case and that zero "id"/"version" were left out.
func toValues(v any) (vals Values, fromStruct bool, err error) {
	switch m := v.(type) {
	case Values:
		return m, false, nil
	case map[string]any:
		return Values(m), false, nil
	case nil:
		return nil, false, errorf(ErrSchema, "no values (nil)")
	}
	if rv, ok := structType(v); ok {
		vals, err := structValues(rv)
		return vals, true, err
	}
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer && !rv.IsNil() {
		rv = rv.Elem()
	}
	if rv.Kind() == reflect.Map && rv.Type().Key().Kind() == reflect.String {
		out := make(Values, rv.Len())
		it := rv.MapRange()
		for it.Next() {
			out[it.Key().String()] = it.Value().Interface()
		}
		return out, false, nil
	}
	return nil, false, errorf(ErrSchema, "values must be psbase.Values, a map[string]any or a struct, not %T", v)
}

// isZero reports whether v is the zero value of its type (nil counts).
func isZero(v any) bool {
	if v == nil {
		return true
	}
	return reflect.ValueOf(v).IsZero()
}

// compareValues orders two canonical non-nil values of the same type:
// -1, 0 or +1. Floats order NaN first.
func compareValues(t Type, a, b any) int {
	switch t {
	case String:
		return strings.Compare(a.(string), b.(string))
	case Int:
		x, y := a.(int64), b.(int64)
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	case Float:
		x, y := a.(float64), b.(float64)
		switch {
		case math.IsNaN(x) && math.IsNaN(y):
			return 0
		case math.IsNaN(x):
			return -1
		case math.IsNaN(y):
			return 1
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	case Bool:
		x, y := a.(bool), b.(bool)
		switch {
		case x == y:
			return 0
		case !x:
			return -1
		}
		return 1
	case Time:
		return a.(time.Time).Compare(b.(time.Time))
	case Bytes:
		return bytes.Compare(a.([]byte), b.([]byte))
	}
	return 0
}

// compareNullable orders values with null first.
func compareNullable(t Type, a, b any) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return -1
	case b == nil:
		return 1
	}
	return compareValues(t, a, b)
}
