package main

// cmd_io.go: import (JSON lines or CSV, --keep-ids) and export (JSON lines
// or CSV), the round trip between a store and a file.
//
// May touch: the store named on the command line, the input or output file.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/psbase/psbase"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
)

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// importRow is one input record: its line, and its JSON object (JSON lines)
// or its cells (CSV, lined up with the header).
type importRow struct {
	line  int
	obj   map[string]any
	cells []string
}

// importer turns input rows into records, inside the transaction (the
// schema is the one the transaction sees).
type importer struct {
	csv     bool
	keepIDs bool
	null    string   // CSV: the cell text that means null (nullable fields)
	header  []string // CSV: the column names of line 1
}

// csvColumns resolves the CSV header against the schema: for each column
// the field, or a zero Field for "id" and "version".
func (im *importer) csvColumns(si *schemaIndex) ([]psbase.Field, error) {
	cols := make([]psbase.Field, len(im.header))
	seen := map[string]int{}
	hasID := false
	for i, name := range im.header {
		if j, dup := seen[name]; dup {
			return nil, usagef("line 1, column %d: %q is also column %d", i+1, name, j+1)
		}
		seen[name] = i
		switch name {
		case "id":
			hasID = true
			continue
		case "version":
			continue
		}
		f, err := si.field(name)
		if err != nil {
			return nil, usagef("line 1, column %d: %v", i+1, err)
		}
		cols[i] = f
	}
	if im.keepIDs && !hasID {
		return nil, usagef("line 1: --keep-ids needs an \"id\" column (as export writes)")
	}
	return cols, nil
}

// parseImportID parses the id of a record for --keep-ids.
func parseImportID(v any) (uint64, error) {
	var s string
	switch x := v.(type) {
	case json.Number:
		s = x.String()
	case string:
		s = x
	default:
		return 0, usagef("\"id\" wants a positive integer, got %s", jsonValue(v))
	}
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, usagef("\"id\" wants a positive integer, got %q", s)
	}
	return id, nil
}

// record converts one row: its values, and its ID if --keep-ids. Errors name
// the line (and for CSV the column).
func (im *importer) record(si *schemaIndex, cols []psbase.Field, r importRow) (uint64, psbase.Values, error) {
	var id uint64
	if im.csv {
		vals := make(psbase.Values, len(cols))
		for i, cell := range r.cells {
			name := im.header[i]
			switch {
			case name == "id":
				if im.keepIDs {
					var err error
					if id, err = parseImportID(cell); err != nil {
						return 0, nil, usagef("line %d, column %d (id): %v", r.line, i+1, err)
					}
				}
				continue
			case name == "version":
				continue
			}
			f := cols[i]
			if cell == im.null && f.Nullable {
				vals[name] = nil
				continue
			}
			v, err := parseText(f, cell)
			if err != nil {
				return 0, nil, usagef("line %d, column %d (%s): %v", r.line, i+1, name, err)
			}
			vals[name] = v
		}
		return id, vals, nil
	}
	vals := make(psbase.Values, len(r.obj))
	for k, v := range r.obj {
		switch k {
		case "id":
			if im.keepIDs {
				var err error
				if id, err = parseImportID(v); err != nil {
					return 0, nil, usagef("line %d: %v", r.line, err)
				}
			}
			continue
		case "version":
			continue
		}
		f, err := si.field(k)
		if err != nil {
			return 0, nil, fmt.Errorf("line %d: %w", r.line, err)
		}
		if vals[k], err = convertJSON(f, v); err != nil {
			return 0, nil, fmt.Errorf("line %d: %w", r.line, err)
		}
	}
	if im.keepIDs && id == 0 {
		return 0, nil, usagef("line %d: --keep-ids needs an \"id\" in every line (as export writes)", r.line)
	}
	return id, vals, nil
}

// importFormat says whether import reads CSV: --csv, --format csv, or a
// FILE named *.csv; JSON lines otherwise. tsv and table are refused.
func (a *app) importFormat(file string) (csvIn bool, err error) {
	switch {
	case a.csvOut, strings.EqualFold(a.format, "csv"):
		return true, nil
	case a.jsonOut, strings.EqualFold(a.format, "json"):
		return false, nil
	case a.format != "":
		return false, usagef("import reads JSON lines or CSV (--csv), not %s", a.format)
	}
	return strings.EqualFold(filepath.Ext(file), ".csv"), nil
}

func (a *app) importCmd() *cobra.Command {
	var (
		batch   int
		keepIDs bool
		null    string
	)
	c := &cobra.Command{
		Use:   "import DB [FILE] [--csv [--null MARKER]] [--keep-ids] [--batch N]",
		Short: "Insert records from JSON lines or CSV (stdin or FILE)",
		Long: `Insert the records read from FILE or stdin: JSON lines by default, CSV with
--csv (or --format csv, or a FILE named *.csv). Prints the number of records
imported. A progress bar shows on a terminal.

JSON lines: one object per line (blank lines are skipped). Keys are field
names; values are JSON numbers, true/false, null, or strings parsed by the
field's type (time RFC 3339, bytes base64 or hex:...).

CSV (RFC 4180): the first line is the header, the field names (in any
order; fields not named get their default). Every cell is text parsed by
its field's type, as in "psbase insert DB field=TEXT". A cell equal to the
--null marker (default: the empty cell) is null in a nullable field; in a
non-nullable field it is text like any other. "psbase export --csv" writes
null as the same marker, so export --csv | import --csv round-trips; give
both --null '\N' (any text your data never holds) to keep an empty string
apart from null. A bad cell names its line and column.

"id" and "version" (as export writes them) are ignored: the store assigns
new IDs. With --keep-ids every record keeps its "id" (Tx.InsertWithID): an
ID already in the store (or twice in the input) is refused with exit code 5
and nothing is imported, and the store's ID sequence moves past the highest
one, so later inserts never clash.

JSON lines are inserted in transactions of --batch lines (0: all in one
transaction): on an error the current batch is rolled back and psbase stops;
earlier batches stay imported (the message says how many). CSV and
--keep-ids imports are always one transaction: all or nothing.`,
		Example: `  psbase import jobs.db < jobs.jsonl
  psbase export old.db | psbase import new.db --batch 10000
  psbase import jobs.db --csv --null '\N' < jobs.csv
  psbase export old.db | psbase import new.db --keep-ids`,
		Args: rangeArgs(1, 2, "DB [FILE]"),
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			if batch < 0 {
				return usagef("--batch must not be negative")
			}
			file := ""
			if len(args) == 2 && args[1] != "-" {
				file = args[1]
			}
			csvIn, err := a.importFormat(file)
			if err != nil {
				return err
			}
			if c.Flags().Changed("null") && !csvIn {
				return usagef("--null is for CSV input (--csv); JSON lines write null as null")
			}
			if csvIn || keepIDs {
				if c.Flags().Changed("batch") && batch != 0 {
					return usagef("--batch: CSV and --keep-ids imports are one transaction (all or nothing)")
				}
				batch = 0
			}
			in := a.stdin
			var size int64 = -1
			if file != "" {
				f, err := os.Open(file)
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			if f, ok := in.(*os.File); ok {
				if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
					size = fi.Size()
				}
			}
			s, err := a.open(ctx, args[0])
			if err != nil {
				return err
			}
			cr := &countingReader{r: in}
			var bar *progressbar.ProgressBar
			if !a.quiet && isTerminal(a.stderr) {
				bar = progressbar.NewOptions64(size, progressbar.OptionSetWriter(a.stderr),
					progressbar.OptionSetDescription("importing"), progressbar.OptionShowBytes(true),
					progressbar.OptionThrottle(100_000_000), progressbar.OptionClearOnFinish())
			}
			im := &importer{csv: csvIn, keepIDs: keepIDs, null: null}
			imported, txns := 0, 0
			var pending []importRow
			flush := func() error {
				if len(pending) == 0 {
					return nil
				}
				err := s.Txn(ctx, func(tx *psbase.Tx) error {
					si := newSchemaIndex(tx.Schema())
					var cols []psbase.Field
					if im.csv {
						var err error
						if cols, err = im.csvColumns(si); err != nil {
							return err
						}
					}
					for _, r := range pending {
						id, vals, err := im.record(si, cols, r)
						if err != nil {
							return err
						}
						if keepIDs {
							err = tx.InsertWithID(id, vals)
						} else {
							_, err = tx.Insert(vals)
						}
						if err != nil {
							return fmt.Errorf("line %d: %w", r.line, err)
						}
					}
					return nil
				})
				if err != nil {
					return err
				}
				imported += len(pending)
				txns++
				pending = pending[:0]
				if bar != nil {
					_ = bar.Set64(cr.n.Load())
				}
				return nil
			}
			fail := func(err error) error {
				if bar != nil {
					_ = bar.Exit()
				}
				if imported > 0 {
					return fmt.Errorf("%w (the %d record(s) before the failed batch were imported and stay)", err, imported)
				}
				return err
			}
			add := func(r importRow) error {
				pending = append(pending, r)
				if batch > 0 && len(pending) >= batch {
					return flush()
				}
				return nil
			}
			if csvIn {
				if err := readCSV(cr, im, add); err != nil {
					return fail(err)
				}
			} else if err := readJSONLines(cr, add); err != nil {
				return fail(err)
			}
			if err := flush(); err != nil {
				return fail(err)
			}
			if bar != nil {
				_ = bar.Finish()
			}
			a.infof("imported %d record(s) in %d transaction(s)", imported, txns)
			_, err = fmt.Fprintln(a.stdout, imported)
			return err
		},
	}
	f := c.Flags()
	f.IntVar(&batch, "batch", 1000, "JSON lines: records per transaction (0: all in one)")
	f.BoolVar(&keepIDs, "keep-ids", false, "keep each record's \"id\" (refusing one in use; one transaction)")
	f.StringVar(&null, "null", "", "CSV: the cell text that means null in a nullable field (default: empty)")
	return c
}

// readJSONLines hands each JSON object line to add.
func readJSONLines(r io.Reader, add func(importRow) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil || dec.More() {
			if err == nil {
				err = errors.New("trailing data after the object")
			}
			return usagef("line %d: not a JSON object: %v", lineNo, err)
		}
		if err := add(importRow{line: lineNo, obj: m}); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading input: %w", err)
	}
	return nil
}

// readCSV reads the header into im and hands each later record to add.
func readCSV(r io.Reader, im *importer, add func(importRow) error) error {
	cr := csv.NewReader(r)
	cr.ReuseRecord = false
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return usagef("CSV input is empty: the first line must name the fields")
	}
	if err != nil {
		return csvError(err)
	}
	if len(header) > 0 {
		header[0] = strings.TrimPrefix(header[0], "\ufeff") // a spreadsheet's byte order mark
	}
	im.header = header
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return csvError(err)
		}
		line, _ := cr.FieldPos(0)
		if err := add(importRow{line: line, cells: rec}); err != nil {
			return err
		}
	}
}

// csvError reports malformed CSV (a usage error) or a read error.
func csvError(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return usagef("line %d, column %d: not valid CSV: %v", pe.Line, pe.Column, pe.Err)
	}
	return fmt.Errorf("reading input: %w", err)
}

// exportFormat is export's format: JSON lines, or CSV with --csv or
// --format csv; the other formats are refused rather than ignored.
func (a *app) exportFormat() (string, error) {
	switch {
	case a.csvOut, strings.EqualFold(a.format, "csv"):
		return "csv", nil
	case a.format == "", a.jsonOut, strings.EqualFold(a.format, "json"):
		return "json", nil
	}
	return "", usagef("export writes JSON lines (the default) or CSV (--csv), not %s; for other formats use \"psbase select DB --format %s\"", a.format, a.format)
}

func (a *app) exportCmd() *cobra.Command {
	var null string
	c := &cobra.Command{
		Use:   "export DB [FILTER...] [--csv [--null MARKER]]",
		Short: "Write records as JSON lines or CSV (the input of import)",
		Long: `Write every record (or those matching the filters) on stdout, in ID order,
with "id" and "version": the input format of import. JSON lines by default;
with --csv (or --format csv), CSV with a header line, values as text by the
field's type (time RFC 3339, bytes base64) and null as the --null marker
(default: the empty cell). Without filters the store is streamed in
constant memory under one shared lock. --no-header drops the CSV header
(import then cannot read it).

` + filtersHelp,
		Example: `  psbase export jobs.db > jobs.jsonl
  psbase export jobs.db 'runs>=5' | jq .name
  psbase export jobs.db --csv --null '\N' > jobs.csv`,
		Args: minArgs(1, "DB [FILTER...]"),
		RunE: a.withStore(func(ctx context.Context, s *psbase.Store, args []string) error {
			format, err := a.exportFormat()
			if err != nil {
				return err
			}
			if format != "csv" && null != "" {
				return usagef("--null is for CSV output (--csv); JSON lines write null as null")
			}
			bw := bufio.NewWriterSize(a.stdout, 64<<10)
			err = s.View(ctx, func(tx *psbase.Tx) error {
				si := newSchemaIndex(tx.Schema())
				names := fieldNames(si.fields)
				w := &rowWriter{format: format, cols: recordCols(names), w: bw}
				if format == "csv" {
					w.cw = csv.NewWriter(bw)
					if !a.noHeader {
						w.writeHeader()
					}
				}
				write := func(r psbase.Record) error {
					row := recordRow(r, names)
					if format == "csv" {
						for i, v := range row {
							if v == nil {
								row[i] = null
							}
						}
					}
					return w.writeRow(row)
				}
				if len(args) == 1 {
					if err := tx.ForEach(write); err != nil {
						return err
					}
					return w.flush()
				}
				filters, err := si.parseFilters(args[1:])
				if err != nil {
					return err
				}
				recs, err := tx.Select(psbase.Query{Where: filters})
				if err != nil {
					return err
				}
				for _, r := range recs {
					if err := write(r); err != nil {
						return err
					}
				}
				return w.flush()
			})
			if ferr := bw.Flush(); err == nil {
				err = ferr
			}
			return err
		}),
	}
	c.Flags().StringVar(&null, "null", "", "CSV: the text written for null (default: an empty cell)")
	return c
}
