package main

import (
	"bytes"
	"encoding/csv"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/psbase/psbase"
)

// Output formats (stable; see README.md):
//
//	table  aligned columns with a header, for people; null shows as "null"
//	tsv    a header line, then one line per row, fields separated by a tab;
//	       null is \N, and backslash, tab, newline and CR are escaped as
//	       \\ \t \n \r (PostgreSQL COPY text format)
//	json   JSON lines: one object per row, keys in column order; records
//	       carry "id" and "version"; time is an RFC 3339 string, bytes
//	       base64, NaN/Inf floats the strings "NaN", "+Inf", "-Inf"
//	csv    RFC 4180 with a header line; null is an empty field
//
// Without a flag the format is table on a terminal and tsv otherwise.

// rowWriter writes rows of one shape in the chosen format.
type rowWriter struct {
	format string
	cols   []string
	header bool
	w      io.Writer
	tw     *tabwriter.Writer
	cw     *csv.Writer
	rows   int
}

func (a *app) newRowWriter(cols []string) *rowWriter {
	format, _ := a.outFormat() // validated in PersistentPreRunE
	r := &rowWriter{format: format, cols: cols, header: !a.noHeader, w: a.stdout}
	switch format {
	case "table":
		r.tw = tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
		r.w = r.tw
	case "csv":
		r.cw = csv.NewWriter(a.stdout)
	}
	if r.header {
		r.writeHeader()
	}
	return r
}

func (r *rowWriter) writeHeader() {
	switch r.format {
	case "table":
		io.WriteString(r.w, strings.ToUpper(strings.Join(r.cols, "\t"))+"\t\n")
	case "tsv":
		io.WriteString(r.w, strings.Join(r.cols, "\t")+"\n")
	case "csv":
		r.cw.Write(r.cols)
	}
}

var tsvEscaper = strings.NewReplacer(`\`, `\\`, "\t", `\t`, "\n", `\n`, "\r", `\r`)

// writeRow writes one row; vals line up with cols.
func (r *rowWriter) writeRow(vals []any) error {
	r.rows++
	switch r.format {
	case "json":
		var b bytes.Buffer
		b.WriteByte('{')
		for i, c := range r.cols {
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(jsonValue(c))
			b.WriteByte(':')
			b.Write(jsonValue(vals[i]))
		}
		b.WriteString("}\n")
		_, err := r.w.Write(b.Bytes())
		return err
	case "csv":
		rec := make([]string, len(vals))
		for i, v := range vals {
			rec[i] = formatText(v)
		}
		return r.cw.Write(rec)
	case "table":
		var b strings.Builder
		for _, v := range vals {
			s := "null"
			if v != nil {
				s = tsvEscaper.Replace(formatText(v))
			}
			b.WriteString(s)
			b.WriteByte('\t')
		}
		b.WriteByte('\n')
		_, err := io.WriteString(r.w, b.String())
		return err
	default: // tsv
		var b strings.Builder
		for i, v := range vals {
			if i > 0 {
				b.WriteByte('\t')
			}
			if v == nil {
				b.WriteString(`\N`)
			} else {
				b.WriteString(tsvEscaper.Replace(formatText(v)))
			}
		}
		b.WriteByte('\n')
		_, err := io.WriteString(r.w, b.String())
		return err
	}
}

// flush finishes the output.
func (r *rowWriter) flush() error {
	if r.tw != nil {
		return r.tw.Flush()
	}
	if r.cw != nil {
		r.cw.Flush()
		return r.cw.Error()
	}
	return nil
}

// recordCols returns the columns of record output: id, version, fields.
func recordCols(fields []string) []string {
	return append([]string{"id", "version"}, fields...)
}

// recordRow lines a record up with recordCols(fields).
func recordRow(rec psbase.Record, fields []string) []any {
	return projectRow(rec, recordCols(fields))
}

// projectRow lines a record up with cols, which may name id and version.
func projectRow(rec psbase.Record, cols []string) []any {
	row := make([]any, len(cols))
	for i, c := range cols {
		switch c {
		case "id":
			row[i] = rec.ID
		case "version":
			row[i] = rec.Version
		default:
			row[i] = rec.Values[c]
		}
	}
	return row
}

func fieldNames(fields []psbase.Field) []string {
	out := make([]string, len(fields))
	for i, f := range fields {
		out[i] = f.Name
	}
	return out
}
