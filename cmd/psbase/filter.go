package main

import (
	"strings"

	"github.com/psbase/psbase"
)

// Filter syntax: one shell word per condition, all conditions ANDed.
//
//	FIELD=VALUE   FIELD==VALUE   FIELD!=VALUE
//	FIELD<VALUE   FIELD<=VALUE   FIELD>VALUE   FIELD>=VALUE
//	FIELD^=PREFIX                 (string or bytes field starts with PREFIX)
//	FIELD in A,B,C                (or a JSON array: 'tag in ["a,b","c"]')
//	FIELD is null                 FIELD is not null
//
// VALUE is parsed by the field's type like an assignment. Spaces around a
// symbolic operator are allowed and ignored (quote the word for the shell);
// the value is everything after the operator and those spaces.
// Conditions are on fields: id and version are not filterable.

// symbolic operators, longest first.
var filterOps = []struct {
	tok string
	op  psbase.Operator
}{
	{"<=", psbase.OpLe}, {">=", psbase.OpGe}, {"!=", psbase.OpNe}, {"==", psbase.OpEq},
	{"^=", psbase.OpPrefix}, {"=", psbase.OpEq}, {"<", psbase.OpLt}, {">", psbase.OpGt},
}

func isNameChar(c byte) bool {
	return c == '_' || c == '-' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

// parseFilter parses one filter word against the schema.
func (s *schemaIndex) parseFilter(arg string) (psbase.Filter, error) {
	bad := func(why string) (psbase.Filter, error) {
		return psbase.Filter{}, usagef("bad filter %q: %s (examples: 'n>=5' name=bob 'name^=pre' 'tag in a,b' 'x is null')", arg, why)
	}
	i := 0
	for i < len(arg) && isNameChar(arg[i]) {
		i++
	}
	name := arg[:i]
	if name == "" {
		return bad("it must start with a field name")
	}
	rest := strings.TrimLeft(arg[i:], " \t")
	if rest == "" {
		return bad("no operator")
	}
	// Word operators: "in", "is null", "is not null".
	if !strings.ContainsAny(rest[:1], "=!<>^") {
		word, tail, _ := strings.Cut(rest, " ")
		switch strings.ToLower(word) {
		case "in":
			return s.parseIn(name, strings.TrimLeft(tail, " \t"), bad)
		case "is":
			f, err := s.field(name)
			if err != nil {
				return psbase.Filter{}, err
			}
			switch strings.Join(strings.Fields(strings.ToLower(tail)), " ") {
			case "null":
				return psbase.IsNull(f.Name), nil
			case "not null":
				return psbase.NotNull(f.Name), nil
			}
			return bad("after 'is' want 'null' or 'not null'")
		}
		return bad("unknown operator (want = != < <= > >= ^= in, is null, is not null)")
	}
	for _, o := range filterOps {
		if !strings.HasPrefix(rest, o.tok) {
			continue
		}
		val := strings.TrimLeft(rest[len(o.tok):], " \t")
		f, err := s.field(name)
		if err != nil {
			return psbase.Filter{}, err
		}
		if o.op == psbase.OpPrefix {
			if f.Type != psbase.String && f.Type != psbase.Bytes {
				return bad("^= needs a string or bytes field, " + name + " is " + f.Type.String())
			}
			v, err := parseText(f, val)
			if err != nil {
				return psbase.Filter{}, err
			}
			return psbase.Prefix(f.Name, v), nil
		}
		v, err := parseText(f, val)
		if err != nil {
			return psbase.Filter{}, err
		}
		return psbase.Filter{Field: f.Name, Op: o.op, Value: v}, nil
	}
	return bad("unknown operator (want = != < <= > >= ^= in, is null, is not null)")
}

func (s *schemaIndex) parseIn(name, list string, bad func(string) (psbase.Filter, error)) (psbase.Filter, error) {
	f, err := s.field(name)
	if err != nil {
		return psbase.Filter{}, err
	}
	if list == "" {
		return bad("'in' needs a list: 'tag in a,b,c'")
	}
	var vals []any
	if strings.HasPrefix(list, "[") {
		j, err := decodeJSON(list)
		arr, ok := j.([]any)
		if err != nil || !ok {
			return bad("the list is not a JSON array")
		}
		for _, x := range arr {
			v, err := convertJSON(f, x)
			if err != nil {
				return psbase.Filter{}, err
			}
			vals = append(vals, v)
		}
	} else {
		for _, item := range strings.Split(list, ",") {
			v, err := parseText(f, item)
			if err != nil {
				return psbase.Filter{}, err
			}
			vals = append(vals, v)
		}
	}
	return psbase.In(f.Name, vals...), nil
}

// parseFilters parses every filter word.
func (s *schemaIndex) parseFilters(args []string) ([]psbase.Filter, error) {
	out := make([]psbase.Filter, 0, len(args))
	for _, a := range args {
		f, err := s.parseFilter(a)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// parseSort parses --sort f,-g.
func (s *schemaIndex) parseSort(spec string) ([]psbase.Order, error) {
	if spec == "" {
		return nil, nil
	}
	var out []psbase.Order
	for _, part := range strings.Split(spec, ",") {
		desc := strings.HasPrefix(part, "-")
		name := strings.TrimPrefix(strings.TrimPrefix(part, "-"), "+")
		if _, err := s.field(name); err != nil {
			return nil, usagef("bad --sort %q: %v", spec, err)
		}
		out = append(out, psbase.Order{Field: name, Desc: desc})
	}
	return out, nil
}

// parseFieldList parses --fields a,b: the columns to print, in order; id
// and version may be among them. It returns the columns and the fields to
// fetch (nil when spec is empty: every column).
func (s *schemaIndex) parseFieldList(spec string) (cols, fields []string, err error) {
	if spec == "" {
		return nil, nil, nil
	}
	fields = []string{}
	for _, name := range strings.Split(spec, ",") {
		if name != "id" && name != "version" {
			if _, err := s.field(name); err != nil {
				return nil, nil, usagef("bad --fields %q: %v", spec, err)
			}
			fields = append(fields, name)
		}
		cols = append(cols, name)
	}
	return cols, fields, nil
}
