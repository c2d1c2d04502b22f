package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
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

// importLine is one parsed input line.
type importLine struct {
	line int
	vals map[string]any
}

func (a *app) importCmd() *cobra.Command {
	var batch int
	c := &cobra.Command{
		Use:   "import DB [FILE]",
		Short: "Insert records from JSON lines (stdin or FILE)",
		Long: `Insert one record per line of JSON (one object per line; blank lines are
skipped) read from FILE or stdin. Keys are field names; "id" and "version"
(as written by export) are ignored: the store assigns new IDs. Values are
JSON numbers, true/false, null, or strings parsed by the field's type (time
RFC 3339, bytes base64 or hex:...).

Records are inserted in transactions of --batch lines (0: all in one
transaction). On an error the current batch is rolled back and psbase stops;
earlier batches stay imported (the message says how many). Prints the number
of records imported. A progress bar shows on a terminal.`,
		Example: `  psbase import jobs.db < jobs.jsonl
  psbase export old.db | psbase import new.db --batch 10000`,
		Args: rangeArgs(1, 2, "DB [FILE]"),
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			if batch < 0 {
				return usagef("--batch must not be negative")
			}
			in := a.stdin
			var size int64 = -1
			if len(args) == 2 && args[1] != "-" {
				f, err := os.Open(args[1])
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
			sc := bufio.NewScanner(cr)
			sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
			imported, txns, lineNo := 0, 0, 0
			var pending []importLine
			flush := func() error {
				if len(pending) == 0 {
					return nil
				}
				err := s.Txn(ctx, func(tx *psbase.Tx) error {
					si := newSchemaIndex(tx.Schema())
					for _, l := range pending {
						vals := make(psbase.Values, len(l.vals))
						for k, v := range l.vals {
							if k == "id" || k == "version" {
								continue
							}
							f, err := si.field(k)
							if err != nil {
								return fmt.Errorf("line %d: %w", l.line, err)
							}
							if vals[k], err = convertJSON(f, v); err != nil {
								return fmt.Errorf("line %d: %w", l.line, err)
							}
						}
						if _, err := tx.Insert(vals); err != nil {
							return fmt.Errorf("line %d: %w", l.line, err)
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
					return fail(usagef("line %d: not a JSON object: %v", lineNo, err))
				}
				pending = append(pending, importLine{line: lineNo, vals: m})
				if batch > 0 && len(pending) >= batch {
					if err := flush(); err != nil {
						return fail(err)
					}
				}
			}
			if err := sc.Err(); err != nil {
				return fail(fmt.Errorf("reading input: %w", err))
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
	c.Flags().IntVar(&batch, "batch", 1000, "records per transaction (0: all in one)")
	return c
}

func (a *app) exportCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "export DB [FILTER...]",
		Short: "Write records as JSON lines",
		Long: `Write every record (or those matching the filters) as JSON lines on stdout,
in ID order, with "id" and "version": the input format of import. Without
filters the store is streamed in constant memory under one shared lock.
export always writes JSON lines; for CSV use "psbase select DB --csv".

` + filtersHelp,
		Example: `  psbase export jobs.db > jobs.jsonl
  psbase export jobs.db 'runs>=5' | jq .name`,
		Args: minArgs(1, "DB [FILTER...]"),
		RunE: a.withStore(func(ctx context.Context, s *psbase.Store, args []string) error {
			bw := bufio.NewWriterSize(a.stdout, 64<<10)
			err := s.View(ctx, func(tx *psbase.Tx) error {
				si := newSchemaIndex(tx.Schema())
				names := fieldNames(si.fields)
				w := &rowWriter{format: "json", cols: recordCols(names), w: bw}
				if len(args) == 1 {
					return tx.ForEach(func(r psbase.Record) error {
						return w.writeRow(recordRow(r, names))
					})
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
					if err := w.writeRow(recordRow(r, names)); err != nil {
						return err
					}
				}
				return nil
			})
			if ferr := bw.Flush(); err == nil {
				err = ferr
			}
			return err
		}),
	}
}
