package main

// cmd_records.go: the record commands: insert, get, select, count, update
// (by ID or --where), incr, upsert, delete.
//
// May touch: the store named on the command line.

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/psbase/psbase"
	"github.com/spf13/cobra"
)

// parseID parses a record ID argument.
func parseID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, usagef("bad record ID %q: want a positive integer", s)
	}
	return id, nil
}

const valuesHelp = `Values are FIELD=TEXT, parsed by the field's type (int 42, float 3.5, bool
true/false, time RFC 3339 / 2024-05-01 / @UNIX / now, bytes base64 or hex:..),
or FIELD:=JSON for a JSON literal (n:=null sets null).`

const filtersHelp = `Filters (ANDed, one shell word each, quoted): 'n>=5'  name=bob  'name!=bob'  'n<3'
'name^=prefix'  'tag in a,b,c'  'tag in ["a,b","c"]'  'x is null'  'x is not null'`

func (a *app) insertCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "insert DB FIELD=VALUE...",
		Short: "Insert one record and print its new ID",
		Long: "Insert one record in its own transaction and print its new ID on stdout.\n" +
			"Fields not given get their default.\n\n" + valuesHelp,
		Example: `  id=$(psbase insert jobs.db name=backup runs=0 started=now)
  psbase insert jobs.db name=report note:=null`,
		Args: minArgs(1, "DB [FIELD=VALUE...]"),
		RunE: a.withStore(func(ctx context.Context, s *psbase.Store, args []string) error {
			var id uint64
			err := s.Txn(ctx, func(tx *psbase.Tx) error {
				vals, err := newSchemaIndex(tx.Schema()).parseAssignments(args[1:])
				if err != nil {
					return err
				}
				id, err = tx.Insert(vals)
				return err
			})
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(a.stdout, id)
			return err
		}),
	}
}

func (a *app) getCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get DB ID [FIELD...]",
		Short: "Print one record, or some of its values",
		Long: `Print the record with that ID in the output format. With FIELD names
(id and version included) print just those values, raw, separated by tabs on
one line: handy for $(...) in scripts. A null prints as an empty string.
A missing record exits with code 3.`,
		Example: `  psbase get jobs.db 7
  psbase get jobs.db 7 --json
  n=$(psbase get jobs.db 7 runs)
  read ver n <<<"$(psbase get jobs.db 7 version runs)"`,
		Args: minArgs(2, "DB ID [FIELD...]"),
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			id, err := parseID(args[1])
			if err != nil {
				return err
			}
			s, err := a.open(ctx, args[0])
			if err != nil {
				return err
			}
			var rec psbase.Record
			var fields []psbase.Field
			err = s.View(ctx, func(tx *psbase.Tx) error {
				var err error
				fields = tx.Schema()
				si := newSchemaIndex(fields)
				for _, name := range args[2:] {
					if name == "id" || name == "version" {
						continue
					}
					if _, err := si.field(name); err != nil {
						return err
					}
				}
				rec, err = tx.Get(id)
				return err
			})
			if err != nil {
				return err
			}
			if len(args) > 2 {
				parts := make([]string, len(args)-2)
				for i, name := range args[2:] {
					switch name {
					case "id":
						parts[i] = strconv.FormatUint(rec.ID, 10)
					case "version":
						parts[i] = strconv.FormatUint(rec.Version, 10)
					default:
						parts[i] = formatText(rec.Values[name])
					}
				}
				_, err = fmt.Fprintln(a.stdout, strings.Join(parts, "\t"))
				return err
			}
			names := fieldNames(fields)
			w := a.newRowWriter(recordCols(names))
			if err := w.writeRow(recordRow(rec, names)); err != nil {
				return err
			}
			return w.flush()
		},
	}
}

func (a *app) selectCmd() *cobra.Command {
	var (
		sortSpec, fieldSpec string
		limit, offset       int
		explain             bool
	)
	c := &cobra.Command{
		Use:   "select DB [FILTER...]",
		Short: "Print the records matching filters",
		Long: "Print the records matching every filter (all records without one), in ID\n" +
			"order unless --sort says otherwise, under one shared lock.\n\n" + filtersHelp,
		Example: `  psbase select jobs.db
  psbase select jobs.db 'runs>=5' 'name^=back' --sort -runs,name --limit 10
  psbase select jobs.db 'tag in a,b' 'note is null' --fields name,runs --json`,
		Args: minArgs(1, "DB [FILTER...]"),
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			if limit < 0 || offset < 0 {
				return usagef("--limit and --offset must not be negative")
			}
			s, err := a.open(ctx, args[0])
			if err != nil {
				return err
			}
			var recs []psbase.Record
			var cols []string
			var plan psbase.Plan
			err = s.View(ctx, func(tx *psbase.Tx) error {
				var err error
				si := newSchemaIndex(tx.Schema())
				q := psbase.Query{Limit: limit, Offset: offset}
				if q.Where, err = si.parseFilters(args[1:]); err != nil {
					return err
				}
				if q.OrderBy, err = si.parseSort(sortSpec); err != nil {
					return err
				}
				if cols, q.Fields, err = si.parseFieldList(fieldSpec); err != nil {
					return err
				}
				if cols == nil {
					cols = recordCols(fieldNames(si.fields))
				}
				if explain {
					plan, err = tx.Explain(q)
					return err
				}
				recs, err = tx.Select(q)
				return err
			})
			if err != nil {
				return err
			}
			if explain {
				_, err = fmt.Fprintln(a.stdout, plan.String())
				return err
			}
			w := a.newRowWriter(cols)
			for _, r := range recs {
				if err := w.writeRow(projectRow(r, cols)); err != nil {
					return err
				}
			}
			return w.flush()
		},
	}
	f := c.Flags()
	f.StringVar(&sortSpec, "sort", "", "sort by these fields, -field for descending: --sort -runs,name")
	f.IntVar(&limit, "limit", 0, "print at most N records (0: all)")
	f.IntVar(&offset, "offset", 0, "skip the first N matching records")
	f.StringVar(&fieldSpec, "fields", "", "print only these columns, in this order (id and version allowed): --fields id,name,runs")
	f.BoolVar(&explain, "explain", false, "print how the query would run (index or full scan) instead of the records")
	return c
}

func (a *app) countCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "count DB [FILTER...]",
		Short: "Print the number of records matching filters",
		Long:  "Print the number of records matching every filter (all records without one).\n\n" + filtersHelp,
		Example: `  psbase count jobs.db
  psbase count jobs.db 'runs>=5' 'note is not null'`,
		Args: minArgs(1, "DB [FILTER...]"),
		RunE: a.withStore(func(ctx context.Context, s *psbase.Store, args []string) error {
			var n int
			err := s.View(ctx, func(tx *psbase.Tx) error {
				where, err := newSchemaIndex(tx.Schema()).parseFilters(args[1:])
				if err != nil {
					return err
				}
				n, err = tx.Count(where...)
				return err
			})
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(a.stdout, n)
			return err
		}),
	}
}

func (a *app) updateCmd() *cobra.Command {
	var (
		ifVersion uint64
		where     []string
	)
	c := &cobra.Command{
		Use:   "update DB ID FIELD=VALUE... [--if-version V] | update DB --where FILTER... FIELD=VALUE...",
		Short: "Change fields of one record (print its new version) or of every match (print the count)",
		Long: `Change the given fields of the record with that ID, in one transaction, and
print the record's new version. With --if-version V the update happens only
if the record's version is still V (read it with "psbase get DB ID version"):
otherwise nothing changes and psbase exits with code 4 (conflict), so a
read-modify-write from the shell cannot lose an update. Without it the last
writer wins. A missing record exits with code 3.

With --where FILTER (repeat it for several filters, ANDed) instead of an ID,
every record matching the filters gets the values, in one transaction (all
or nothing: a unique index refusing one record, exit 5, changes none), and
psbase prints how many records were updated (0 if none matched). --where
takes one filter per flag because FIELD=VALUE words would read as filters.

` + valuesHelp + "\n\n" + filtersHelp,
		Example: `  psbase update jobs.db 7 note='done at 5' finished=now
  read ver n <<<"$(psbase get jobs.db 7 version runs)"
  psbase update jobs.db 7 runs=$((n+1)) --if-version "$ver" || echo "lost the race: retry"
  psbase update jobs.db --where 'runs>=5' --where 'name^=back' note=busy`,
		Args: minArgs(1, "DB ID FIELD=VALUE... or DB --where FILTER FIELD=VALUE..."),
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			checked := c.Flags().Changed("if-version")
			if len(where) > 0 {
				if checked {
					return usagef("--if-version is for one record (update DB ID ...), not --where")
				}
				return a.updateWhere(ctx, args[0], where, args[1:])
			}
			if len(args) < 3 {
				return usagef("update: want DB ID FIELD=VALUE... (or DB --where FILTER FIELD=VALUE...), got %d argument(s)", len(args))
			}
			id, err := parseID(args[1])
			if err != nil {
				return err
			}
			s, err := a.open(ctx, args[0])
			if err != nil {
				return err
			}
			var out psbase.Record
			err = s.Txn(ctx, func(tx *psbase.Tx) error {
				vals, err := newSchemaIndex(tx.Schema()).parseAssignments(args[2:])
				if err != nil {
					return err
				}
				if checked {
					out, err = tx.Update(psbase.Record{ID: id, Version: ifVersion}, vals)
				} else {
					out, err = tx.UpdateByID(id, vals)
				}
				return err
			})
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(a.stdout, out.Version)
			return err
		},
	}
	c.Flags().Uint64Var(&ifVersion, "if-version", 0, "update only if the record's version is still V (else exit 4)")
	c.Flags().StringArrayVar(&where, "where", nil, "update every record matching this filter (repeat for several, ANDed) instead of one ID")
	return c
}

// updateWhere is update --where: every matching record, one transaction;
// it prints the count.
func (a *app) updateWhere(ctx context.Context, path string, where, assignments []string) error {
	if len(assignments) == 0 {
		return usagef("update --where: give the FIELD=VALUE changes")
	}
	s, err := a.open(ctx, path)
	if err != nil {
		return err
	}
	n := 0
	err = s.Txn(ctx, func(tx *psbase.Tx) error {
		si := newSchemaIndex(tx.Schema())
		filters, err := si.parseFilters(where)
		if err != nil {
			return err
		}
		vals, err := si.parseAssignments(assignments)
		if err != nil {
			return err
		}
		recs, err := tx.Select(psbase.Query{Where: filters, Fields: []string{}})
		if err != nil {
			return err
		}
		for _, r := range recs {
			if _, err := tx.UpdateByID(r.ID, vals); err != nil {
				return fmt.Errorf("record %d: %w", r.ID, err)
			}
		}
		n = len(recs)
		return nil
	})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(a.stdout, n)
	return err
}

func (a *app) incrCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "incr DB ID FIELD [DELTA]",
		Short: "Add DELTA (default 1) to a numeric field, atomically; print the new value",
		Long: `Add DELTA (default 1) to an int or float field of one record, atomically
(Store.Add), and print the new value. Any number of concurrent incr commands
on the same record end with the exact sum: the read and the write happen
under one exclusive lock, and increments that arrive together are committed
together (group commit). A null value counts as 0. A negative DELTA may be
written as it is (incr jobs.db 7 runs -1) or after -- (incr jobs.db 7 runs
-- -1), which every command accepts before words that start with a dash.`,
		Example: `  psbase incr jobs.db 7 runs
  psbase incr jobs.db 7 runs 10
  psbase incr jobs.db 7 runs -1
  psbase incr jobs.db 7 runs -- -1`,
		Args: rangeArgs(3, 4, "DB ID FIELD [DELTA]"),
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			id, err := parseID(args[1])
			if err != nil {
				return err
			}
			name := args[2]
			deltaText := "1"
			if len(args) == 4 {
				deltaText = args[3]
			}
			s, err := a.open(ctx, args[0])
			if err != nil {
				return err
			}
			fields, err := s.Schema(ctx)
			if err != nil {
				return err
			}
			f, err := newSchemaIndex(fields).field(name)
			if err != nil {
				return err
			}
			if f.Type != psbase.Int && f.Type != psbase.Float {
				return usagef("incr: field %q is %s, not int or float", name, f.Type)
			}
			delta, err := parseText(f, deltaText)
			if err != nil {
				return usagef("bad DELTA: %v", err)
			}
			// Store.Add: one atomic increment, combined with other
			// processes' writes into one commit when they come together.
			var result any
			if f.Type == psbase.Int {
				result, err = s.Add(ctx, id, name, delta.(int64))
			} else {
				result, err = s.AddFloat(ctx, id, name, delta.(float64))
			}
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(a.stdout, formatText(result))
			return err
		},
	}
}

func (a *app) upsertCmd() *cobra.Command {
	var key string
	c := &cobra.Command{
		Use:   "upsert DB --key FIELD FIELD=VALUE...",
		Short: "Insert a record, or update the one with the same unique key; print its ID",
		Long: `Insert the record, or update the record whose --key field (which needs a
unique index: create it with "psbase create-index DB FIELD --unique" or the !
marker) has the same value, atomically: the cure for the check-then-insert
race of parallel importers. Prints the record's ID on stdout, and "inserted"
or "updated" on stderr (unless --quiet; in JSON output both are in the line).

` + valuesHelp,
		Example: `  psbase upsert accounts.db --key ext_id ext_id=1 name=account1`,
		Args:    minArgs(2, "DB FIELD=VALUE..."),
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			if key == "" {
				return usagef("upsert needs --key FIELD")
			}
			s, err := a.open(ctx, args[0])
			if err != nil {
				return err
			}
			var id uint64
			var inserted bool
			err = s.Txn(ctx, func(tx *psbase.Tx) error {
				si := newSchemaIndex(tx.Schema())
				if _, err := si.field(key); err != nil {
					return err
				}
				vals, err := si.parseAssignments(args[1:])
				if err != nil {
					return err
				}
				if _, ok := vals[key]; !ok {
					return usagef("upsert: the values must include the key field %q", key)
				}
				id, inserted, err = tx.Upsert(key, vals)
				return err
			})
			if err != nil {
				return err
			}
			what := "updated"
			if inserted {
				what = "inserted"
			}
			if f, _ := a.outFormat(); f == "json" {
				_, err = fmt.Fprintf(a.stdout, "{\"id\":%d,\"inserted\":%t}\n", id, inserted)
				return err
			}
			a.infof("%s record %d", what, id)
			_, err = fmt.Fprintln(a.stdout, id)
			return err
		},
	}
	c.Flags().StringVar(&key, "key", "", "the uniquely indexed field that identifies the record (required)")
	return c
}

func (a *app) deleteCmd() *cobra.Command {
	var where, all bool
	c := &cobra.Command{
		Use:   "delete DB ID... | delete DB --where FILTER... | delete DB --all",
		Short: "Delete records by ID or by filter; print how many",
		Long: `Delete the records with these IDs (all of them or none: a missing ID exits
with code 3 and deletes nothing), or with --where every record matching the
filters, or with --all every record. One transaction. Prints the number of
records deleted.

` + filtersHelp,
		Example: `  psbase delete jobs.db 7 8 9
  psbase delete jobs.db --where 'finished<2024-01-01' 'note is null'`,
		Args: minArgs(1, "DB and IDs, --where FILTER... or --all"),
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			rest := args[1:]
			switch {
			case where && all:
				return usagef("use --where or --all, not both")
			case where && len(rest) == 0:
				return usagef("--where needs at least one filter (to delete everything use --all)")
			case all && len(rest) > 0:
				return usagef("--all takes no IDs or filters")
			case !where && !all && len(rest) == 0:
				return usagef("delete: give record IDs, --where FILTER... or --all")
			}
			var ids []uint64
			if !where && !all {
				for _, arg := range rest {
					id, err := parseID(arg)
					if err != nil {
						return err
					}
					ids = append(ids, id)
				}
			}
			s, err := a.open(ctx, args[0])
			if err != nil {
				return err
			}
			var n int
			err = s.Txn(ctx, func(tx *psbase.Tx) error {
				if where || all {
					filters, err := newSchemaIndex(tx.Schema()).parseFilters(rest)
					if err != nil {
						return err
					}
					recs, err := tx.Select(psbase.Query{Where: filters, Fields: []string{}})
					if err != nil {
						return err
					}
					for _, r := range recs {
						ids = append(ids, r.ID)
					}
					if len(ids) == 0 {
						return nil
					}
				}
				n, err = tx.Delete(ids...)
				return err
			})
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(a.stdout, n)
			return err
		},
	}
	c.Flags().BoolVar(&where, "where", false, "the arguments after DB are filters, not IDs")
	c.Flags().BoolVar(&all, "all", false, "delete every record")
	return c
}
