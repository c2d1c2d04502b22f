package main

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/psbase/psbase"
)

// This file turns shell words into psbase values, by the field's type:
//
//	string  the text as it is
//	int     decimal: -12, 42
//	float   3.5, -1e9, NaN, Inf
//	bool    true/false, 1/0, t/f, yes/no, on/off (any case)
//	time    RFC 3339 (2024-05-01T12:00:00Z, fractions and offsets allowed),
//	        a date 2024-05-01 (midnight UTC), @UNIXSECONDS, or "now"
//	bytes   base64 (standard alphabet, padding optional), or hex:0a1b..., or
//	        base64:... to be explicit
//
// "field=text" parses text by those rules; "field:=JSON" takes a JSON
// literal: null, a number, true/false, or a string parsed by the rules above.

// fieldSpec is the parsed form of NAME:TYPE[?][!|+][=DEFAULT].
func parseFieldSpec(spec string) (psbase.Field, error) {
	var f psbase.Field
	name, rest, ok := strings.Cut(spec, ":")
	if !ok || name == "" {
		return f, usagef("bad field %q: want NAME:TYPE[?][!|+][=DEFAULT], e.g. count:int=0", spec)
	}
	f.Name = name
	typ, def, hasDef := strings.Cut(rest, "=")
	// Markers after the type, in any order.
	for len(typ) > 0 {
		switch typ[len(typ)-1] {
		case '?':
			f.Nullable = true
		case '!':
			f.Unique, f.Indexed = true, true
		case '+':
			f.Indexed = true
		default:
			goto done
		}
		typ = typ[:len(typ)-1]
	}
done:
	t, err := psbase.ParseType(typ)
	if err != nil {
		return f, usagef("bad field %q: unknown type %q (want string, int, float, bool, time or bytes)", spec, typ)
	}
	f.Type = t
	if hasDef {
		v, err := parseDefault(f, def)
		if err != nil {
			return f, err
		}
		f.Default = v
	}
	return f, nil
}

// parseDefault parses the =DEFAULT of a field spec: text by the type's
// rules, or "null" for a nullable field.
func parseDefault(f psbase.Field, s string) (any, error) {
	if s == "null" && f.Nullable && f.Type != psbase.String {
		return nil, nil
	}
	return parseText(f, s)
}

// parseText parses s as a value of f's type.
func parseText(f psbase.Field, s string) (any, error) {
	bad := func(want string) error {
		return usagef("field %q wants %s, got %q", f.Name, want, s)
	}
	switch f.Type {
	case psbase.String:
		return s, nil
	case psbase.Int:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
				return nil, usagef("field %q wants int: %q is out of the int64 range", f.Name, s)
			}
			return nil, bad("int (a decimal integer like 42 or -7)")
		}
		return n, nil
	case psbase.Float:
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, bad("float (a number like 3.5 or -1e9)")
		}
		return x, nil
	case psbase.Bool:
		switch strings.ToLower(s) {
		case "true", "t", "1", "yes", "y", "on":
			return true, nil
		case "false", "f", "0", "no", "n", "off":
			return false, nil
		}
		return nil, bad("bool (true or false)")
	case psbase.Time:
		return parseTime(f, s)
	case psbase.Bytes:
		return parseBytes(f, s)
	}
	return nil, usagef("field %q has an unknown type", f.Name)
}

func parseTime(f psbase.Field, s string) (any, error) {
	switch {
	case s == "now":
		return time.Now().UTC(), nil
	case strings.HasPrefix(s, "@"):
		n, err := strconv.ParseInt(s[1:], 10, 64)
		if err == nil {
			return time.Unix(n, 0).UTC(), nil
		}
	default:
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t.UTC(), nil
		}
		if t, err := time.Parse(time.DateOnly, s); err == nil {
			return t.UTC(), nil
		}
	}
	return nil, usagef("field %q wants time (RFC 3339 like 2024-05-01T12:00:00Z, a date 2024-05-01, @UNIXSECONDS or now), got %q", f.Name, s)
}

func parseBytes(f psbase.Field, s string) (any, error) {
	var (
		b   []byte
		err error
	)
	switch {
	case strings.HasPrefix(s, "hex:"):
		b, err = hex.DecodeString(s[4:])
	case strings.HasPrefix(s, "base64:"):
		b, err = decodeBase64(s[7:])
	default:
		b, err = decodeBase64(s)
	}
	if err != nil {
		return nil, usagef("field %q wants bytes (base64, or hex:0a1b...), got %q", f.Name, s)
	}
	return b, nil
}

func decodeBase64(s string) ([]byte, error) {
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// convertJSON converts a decoded JSON value (decoded with UseNumber) to f's
// type: numbers for int and float, true/false for bool, strings by the text
// rules for every type, null as null.
func convertJSON(f psbase.Field, v any) (any, error) {
	switch x := v.(type) {
	case nil:
		if !f.Nullable {
			return nil, usagef("field %q is not nullable, got null", f.Name)
		}
		return nil, nil
	case string:
		if f.Type == psbase.Float {
			switch x { // what formatValue writes for non-finite floats
			case "NaN":
				return math.NaN(), nil
			case "+Inf", "Inf":
				return math.Inf(1), nil
			case "-Inf":
				return math.Inf(-1), nil
			}
		}
		return parseText(f, x)
	case json.Number:
		switch f.Type {
		case psbase.Int:
			if n, err := x.Int64(); err == nil {
				return n, nil
			}
			return nil, usagef("field %q wants int, got %s", f.Name, x)
		case psbase.Float:
			return x.Float64()
		}
		return nil, usagef("field %q wants %s, got the number %s", f.Name, f.Type, x)
	case bool:
		if f.Type == psbase.Bool {
			return x, nil
		}
		return nil, usagef("field %q wants %s, got %v", f.Name, f.Type, x)
	}
	return nil, usagef("field %q wants %s, got a JSON %s", f.Name, f.Type, jsonKind(v))
}

func jsonKind(v any) string {
	switch v.(type) {
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// decodeJSON decodes one JSON literal, numbers as json.Number.
func decodeJSON(s string) (any, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data after the JSON value")
	}
	return v, nil
}

// schemaIndex finds fields by name.
type schemaIndex struct {
	fields []psbase.Field
	byName map[string]int
}

func newSchemaIndex(fields []psbase.Field) *schemaIndex {
	s := &schemaIndex{fields: fields, byName: make(map[string]int, len(fields))}
	for i, f := range fields {
		s.byName[f.Name] = i
	}
	return s
}

func (s *schemaIndex) names() string {
	n := make([]string, len(s.fields))
	for i, f := range s.fields {
		n[i] = f.Name
	}
	return strings.Join(n, ", ")
}

// field returns the named field or a usage error listing the fields.
func (s *schemaIndex) field(name string) (psbase.Field, error) {
	i, ok := s.byName[name]
	if !ok {
		if isReservedName(name) {
			return psbase.Field{}, usagef("%q is assigned by the store and cannot be set or filtered on", name)
		}
		return psbase.Field{}, usagef("unknown field %q (fields: %s)", name, s.names())
	}
	return s.fields[i], nil
}

func isReservedName(name string) bool {
	switch strings.ToLower(name) {
	case "id", "version", "__id__", "__version__":
		return true
	}
	return false
}

// parseAssignment parses "field=text" or "field:=JSON".
func (s *schemaIndex) parseAssignment(arg string) (string, any, error) {
	name, val, ok := strings.Cut(arg, "=")
	if !ok {
		return "", nil, usagef("bad value %q: want field=value (or field:=JSON)", arg)
	}
	isJSON := strings.HasSuffix(name, ":")
	name = strings.TrimSuffix(name, ":")
	f, err := s.field(name)
	if err != nil {
		return "", nil, err
	}
	if !isJSON {
		v, err := parseText(f, val)
		return name, v, err
	}
	j, err := decodeJSON(val)
	if err != nil {
		return "", nil, usagef("bad value for %q: %q is not a JSON value (%v)", name, val, err)
	}
	v, err := convertJSON(f, j)
	return name, v, err
}

// parseAssignments parses every argument into one Values map.
func (s *schemaIndex) parseAssignments(args []string) (psbase.Values, error) {
	vals := make(psbase.Values, len(args))
	for _, arg := range args {
		name, v, err := s.parseAssignment(arg)
		if err != nil {
			return nil, err
		}
		if _, dup := vals[name]; dup {
			return nil, usagef("field %q is given twice", name)
		}
		vals[name] = v
	}
	return vals, nil
}

// formatText renders a value as text (table, tsv, csv, raw get): the
// inverse of parseText. Null is "" here; callers that must tell null apart
// check for nil first.
func formatText(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case []byte:
		return base64.StdEncoding.EncodeToString(x)
	}
	return fmt.Sprint(v)
}

// jsonValue renders a value as a JSON literal.
func jsonValue(v any) []byte {
	switch x := v.(type) {
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			b, _ := json.Marshal(formatText(x))
			return b
		}
	case time.Time:
		b, _ := json.Marshal(formatText(x))
		return b
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		b, _ := json.Marshal(fmt.Sprint(v))
		return b
	}
	return bytes.TrimRight(buf.Bytes(), "\n")
}
