package psbase

// May touch: nothing (the schema in memory).

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/vmihailenco/msgpack/v5"
)

// Type is the type of a field's values.
type Type uint8

// The field types. A value is stored in its canonical Go form: String →
// string, Int → int64, Float → float64, Bool → bool, Time → time.Time (UTC,
// nanosecond precision), Bytes → []byte. A nullable field may also hold nil.
const (
	String Type = iota + 1
	Int
	Float
	Bool
	Time
	Bytes
)

var typeNames = [...]string{"", "string", "int", "float", "bool", "time", "bytes"}

// String returns the type's name as ParseType accepts it: "string", "int", ...
func (t Type) String() string {
	if int(t) < len(typeNames) && t > 0 {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// ParseType parses a type name ("string", "int", "float", "bool", "time",
// "bytes"; "str", "int64", "float64", "bytea" are accepted aliases).
func ParseType(s string) (Type, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "string", "str", "text":
		return String, nil
	case "int", "int64", "integer":
		return Int, nil
	case "float", "float64", "real":
		return Float, nil
	case "bool", "boolean":
		return Bool, nil
	case "time", "timestamp", "datetime":
		return Time, nil
	case "bytes", "bytea", "blob":
		return Bytes, nil
	}
	return 0, errorf(ErrSchema, "unknown type %q (want string, int, float, bool, time or bytes)", s)
}

func (t Type) valid() bool { return t >= String && t <= Bytes }

// MarshalText implements encoding.TextMarshaler (the type's name).
func (t Type) MarshalText() ([]byte, error) {
	if !t.valid() {
		return nil, errorf(ErrSchema, "invalid type %d", uint8(t))
	}
	return []byte(t.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (t *Type) UnmarshalText(b []byte) error {
	v, err := ParseType(string(b))
	if err != nil {
		return err
	}
	*t = v
	return nil
}

// Field describes one field of the table.
//
// Default is the value a record gets when an insert does not give the field,
// and the value records written before AddField read back. A nil Default
// means the zero value of Type ("" / 0 / false / the zero time / empty bytes),
// or null for a Nullable field.
type Field struct {
	Name     string `json:"name"`
	Type     Type   `json:"type"`
	Default  any    `json:"default,omitempty"`
	Nullable bool   `json:"nullable,omitempty"`
	// Indexed asks for a secondary index on the field; Unique for a unique one
	// (Unique implies Indexed). See Store.CreateIndex.
	Indexed bool `json:"indexed,omitempty"`
	Unique  bool `json:"unique,omitempty"`
}

// maxSchemaSize bounds the stored schema (a schema of the most fields anyone
// declares is a few kilobytes; the bound only keeps a damaged one harmless).
const maxSchemaSize = 1 << 20

// maxFieldName bounds field names; longer ones are refused.
const maxFieldName = 64

// reservedNames are refused as field names, in any case: they name the
// record's own ID and Version (Buzhug's __id__ and __version__).
var reservedNames = []string{"id", "version", "__id__", "__version__"}

func isReserved(name string) bool {
	for _, r := range reservedNames {
		if strings.EqualFold(name, r) {
			return true
		}
	}
	return false
}

// validateName checks a field name: 1-64 characters, a letter or '_' first,
// then letters, digits, '_' or '-'; not reserved.
func validateName(name string) error {
	if name == "" {
		return errorf(ErrSchema, "empty field name")
	}
	if len(name) > maxFieldName {
		return errorf(ErrSchema, "field name %q is longer than %d characters", name, maxFieldName)
	}
	for i, r := range name {
		letter := r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
		if i == 0 && !letter {
			return errorf(ErrSchema, "field name %q must start with a letter or '_'", name)
		}
		if !letter && r != '-' && !(r >= '0' && r <= '9') {
			return errorf(ErrSchema, "field name %q has the character %q (allowed: letters, digits, '_', '-')", name, r)
		}
	}
	if isReserved(name) {
		return errorf(ErrSchema, "field name %q is reserved", name)
	}
	return nil
}

// fieldDef is a field as stored: the user's Field plus the number that keys
// its values inside every record. Numbers are never reused: DropField retires
// a number, and a later field of the same name gets a new one, so old values
// can never reappear.
type fieldDef struct {
	Num      uint32 `msgpack:"num"`
	Name     string `msgpack:"name"`
	Type     Type   `msgpack:"type"`
	Default  any    `msgpack:"default"` // canonical value (see normalize)
	Nullable bool   `msgpack:"nullable"`
}

// schema is the table's schema as stored in the meta bucket.
type schema struct {
	Fields  []fieldDef `msgpack:"fields"`
	NextNum uint32     `msgpack:"next_num"`
	Indexes []indexDef `msgpack:"indexes"`

	byName map[string]int // Name → position in Fields
	byNum  map[uint32]int // Num → position in Fields
}

func (s *schema) build() {
	s.byName = make(map[string]int, len(s.Fields))
	s.byNum = make(map[uint32]int, len(s.Fields))
	for i, f := range s.Fields {
		s.byName[f.Name] = i
		s.byNum[f.Num] = i
	}
}

// field returns the live field called name, or an ErrSchema error.
func (s *schema) field(name string) (*fieldDef, error) {
	i, ok := s.byName[name]
	if !ok {
		return nil, errorf(ErrSchema, "unknown field %q (fields: %s)", name, s.names())
	}
	return &s.Fields[i], nil
}

func (s *schema) names() string {
	n := make([]string, len(s.Fields))
	for i, f := range s.Fields {
		n[i] = f.Name
	}
	return strings.Join(n, ", ")
}

// public returns the schema as the user sees it.
func (s *schema) public() []Field {
	out := make([]Field, len(s.Fields))
	for i, f := range s.Fields {
		out[i] = Field{Name: f.Name, Type: f.Type, Default: f.Default, Nullable: f.Nullable}
		if ix := s.index(f.Name); ix != nil {
			out[i].Indexed = true
			out[i].Unique = ix.Unique
		}
	}
	return out
}

// clone returns a deep-enough copy to modify Fields and Indexes.
func (s *schema) clone() *schema {
	c := &schema{NextNum: s.NextNum}
	c.Fields = append([]fieldDef(nil), s.Fields...)
	c.Indexes = append([]indexDef(nil), s.Indexes...)
	c.build()
	return c
}

// newSchema validates fields, numbers them 1..n and declares the indexes
// they ask for (Indexed, Unique); the index buckets are made by initFormat.
func newSchema(fields []Field) (*schema, error) {
	if len(fields) == 0 {
		return nil, errorf(ErrSchema, "a schema needs at least one field")
	}
	s := &schema{NextNum: 1}
	for _, f := range fields {
		if err := s.addField(f, ""); err != nil {
			return nil, err
		}
		if f.Indexed || f.Unique {
			d, _ := s.field(f.Name)
			s.Indexes = append(s.Indexes, indexDef{Field: f.Name, Num: d.Num, Unique: f.Unique})
		}
	}
	return s, nil
}

// addField validates f and inserts it after the field named after ("" = at
// the end).
func (s *schema) addField(f Field, after string) error {
	if err := validateName(f.Name); err != nil {
		return err
	}
	if !f.Type.valid() {
		return errorf(ErrSchema, "field %q has no valid type", f.Name)
	}
	if s.byName == nil {
		s.build()
	}
	if _, dup := s.byName[f.Name]; dup {
		return errorf(ErrSchema, "duplicate field name %q", f.Name)
	}
	d := fieldDef{Num: s.NextNum, Name: f.Name, Type: f.Type, Nullable: f.Nullable}
	def, err := d.defaultValue(f.Default)
	if err != nil {
		return err
	}
	d.Default = def
	pos := len(s.Fields)
	if after != "" {
		i, ok := s.byName[after]
		if !ok {
			return errorf(ErrSchema, "unknown field %q to add %q after", after, f.Name)
		}
		pos = i + 1
	}
	s.Fields = append(s.Fields, fieldDef{})
	copy(s.Fields[pos+1:], s.Fields[pos:])
	s.Fields[pos] = d
	s.NextNum++
	s.build()
	return nil
}

// defaultValue normalizes a default for the field; nil means the zero value
// of the type, or null for a nullable field.
func (f *fieldDef) defaultValue(v any) (any, error) {
	if v == nil {
		if f.Nullable {
			return nil, nil
		}
		return zeroValue(f.Type), nil
	}
	d, err := normalize(f, v)
	if err != nil {
		return nil, fmt.Errorf("default: %w", err)
	}
	return d, nil
}

// dropField removes a live field; its number stays retired.
func (s *schema) dropField(name string) error {
	i, ok := s.byName[name]
	if !ok {
		return errorf(ErrSchema, "unknown field %q (fields: %s)", name, s.names())
	}
	if len(s.Fields) == 1 {
		return errorf(ErrSchema, "cannot drop %q: the last field", name)
	}
	s.Fields = append(s.Fields[:i], s.Fields[i+1:]...)
	s.build()
	return nil
}

// encodeSchema and decodeSchema move the schema in and out of the meta bucket.
func encodeSchema(s *schema) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	if err := enc.Encode(s); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func decodeSchema(b []byte) (*schema, error) {
	// The schema is untrusted bytes: check their shape (bounded, without
	// recursion) before a general decoder may allocate what they claim.
	if len(b) > maxSchemaSize {
		return nil, errorf(ErrCorrupt, "schema of %d bytes (at most %d)", len(b), maxSchemaSize)
	}
	if err := validateMsgpack(b, 3); err != nil {
		return nil, errorf(ErrCorrupt, "schema does not decode: %v", err)
	}
	var s schema
	if err := msgpack.Unmarshal(b, &s); err != nil {
		return nil, errorf(ErrCorrupt, "schema does not decode: %v", err)
	}
	if len(s.Fields) == 0 {
		return nil, errorf(ErrCorrupt, "schema has no fields")
	}
	for i := range s.Fields {
		f := &s.Fields[i]
		if !f.Type.valid() || f.Name == "" || f.Num == 0 || f.Num >= s.NextNum {
			return nil, errorf(ErrCorrupt, "schema field %d (%q) is invalid", i, f.Name)
		}
		// msgpack hands back compact ints, time.Time in local zone...:
		// bring the default back to its canonical form.
		if f.Default != nil {
			d, err := normalize(f, f.Default)
			if err != nil {
				return nil, errorf(ErrCorrupt, "schema default of %q: %v", f.Name, err)
			}
			f.Default = d
		}
	}
	s.build()
	if len(s.byName) != len(s.Fields) || len(s.byNum) != len(s.Fields) {
		return nil, errorf(ErrCorrupt, "schema has duplicate field names or numbers")
	}
	return &s, nil
}
