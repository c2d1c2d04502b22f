package main

import (
	"context"
	"errors"
	"strconv"

	"github.com/psbase/psbase"
	"github.com/spf13/cobra"
)

// watchCmd is "psbase watch": the store's change feed as a stream of lines.
func (a *app) watchCmd() *cobra.Command {
	var since string
	var count int
	c := &cobra.Command{
		Use:   "watch DB",
		Short: "Stream the store's changes as other processes commit them",
		Long: `Print one line per change committed to the store: its revision, what it did
(insert, update, delete, or schema for a change of the schema, whose id is
null) and the record's ID, as each commit happens, until interrupted
(Ctrl-C: exit code 130) or --count changes were printed. A commit reaches
the stream within milliseconds (the file system tells psbase of it; where it
cannot, the store is read once a second); a watch that waits costs nothing.

Without --since the stream starts at the store's current revision (it says
which on stderr); --since REV prints every change after REV first, as long
as the store's change log still holds them (it keeps the last 10 000
revisions): otherwise, and after the store was restored from a backup, the
watch fails with the revision to resync from. Changes of one revision (one
transaction, or one batch of writes combined by group commit) come
together, the schema change first, then inserts, updates and deletes, each
in ID order. --json prints JSON lines ({"rev":7,"kind":"insert","id":42}).

A store written by an older psbase (format 3) gets its change log here: from
then on psbase releases before the change feed can read it but not write it.`,
		Example: `  psbase watch jobs.db
  psbase watch jobs.db --json --since 1200 | jq -c 'select(.kind=="delete")'
  psbase watch jobs.db --count 1 >/dev/null && echo "the store changed"`,
		Args: exactArgs(1, "DB"),
		RunE: a.withStore(func(ctx context.Context, s *psbase.Store, args []string) error {
			if count < 0 {
				return usagef("--count must not be negative")
			}
			var from uint64
			if since == "" {
				rev, err := s.Revision(ctx)
				if err != nil {
					return watchErr(err)
				}
				from = rev
				a.infof("watching %s from revision %d", args[0], rev)
			} else {
				rev, err := strconv.ParseUint(since, 10, 64)
				if err != nil {
					return usagef("--since wants a revision (a non-negative integer), not %q", since)
				}
				from = rev
			}
			w := a.newRowWriter([]string{"rev", "kind", "id"})
			if err := w.flush(); err != nil {
				return err
			}
			n := 0
			for ch, err := range s.Watch(ctx, from) {
				if err != nil {
					return watchErr(err)
				}
				var id any = ch.ID
				if ch.Kind == psbase.ChangeSchema {
					id = nil
				}
				if err := w.writeRow([]any{ch.Rev, ch.Kind.String(), id}); err != nil {
					return err
				}
				if err := w.flush(); err != nil {
					return err
				}
				if n++; count > 0 && n >= count {
					break
				}
			}
			return nil
		}),
	}
	c.Flags().StringVar(&since, "since", "", "print the changes after this revision first (default: the current revision)")
	c.Flags().IntVar(&count, "count", 0, "exit after this many changes (0: never)")
	return c
}

// watchErr is the command's error for err: an interruption exits 130
// without a message, as an interrupted stream is how a watch ends.
func watchErr(err error) error {
	if errors.Is(err, context.Canceled) {
		return &codeError{code: exitSignal}
	}
	return err
}
