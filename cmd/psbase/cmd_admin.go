package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/psbase/psbase"
	"github.com/spf13/cobra"
)

func (a *app) checkCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check DB",
		Short: "Verify the whole store; exit 7 if anything is wrong",
		Long: `Verify the store under the shared lock: bbolt's page check, the schema, the
checksum and decoding of every record, the record count, the ID sequence and
every index. Prints "ok" and the counts, or every problem found (one per line)
and exits with code 7.`,
		Example: `  psbase check jobs.db || mail -s "jobs.db is damaged" ops@example.com`,
		Args:    exactArgs(1, "DB"),
		RunE: a.withStore(func(ctx context.Context, s *psbase.Store, args []string) error {
			rep, err := s.Check(ctx)
			if err != nil && !errors.Is(err, psbase.ErrCorrupt) {
				return err
			}
			if f, _ := a.outFormat(); f == "json" {
				problems := make([]string, len(rep.Problems))
				for i, p := range rep.Problems {
					problems[i] = p.String()
				}
				w := &rowWriter{format: "json", cols: []string{"ok", "records", "indexes", "problems"}, w: a.stdout}
				if werr := w.writeRow([]any{rep.OK() && err == nil, rep.Records, rep.Indexes, problems}); werr != nil {
					return werr
				}
			} else if rep.OK() && err == nil {
				fmt.Fprintf(a.stdout, "ok: %d record(s), %d index(es) checked\n", rep.Records, rep.Indexes)
			} else {
				for _, p := range rep.Problems {
					fmt.Fprintln(a.stdout, p.String())
				}
			}
			if err != nil {
				return err
			}
			if !rep.OK() {
				return &codeError{code: exitCorrupt, msg: fmt.Sprintf("check %s: %d problem(s)", args[0], len(rep.Problems))}
			}
			return nil
		}),
	}
}

func (a *app) recoverCmd() *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "recover DAMAGED OUT",
		Short: "Salvage every readable record of a damaged store into a new one",
		Long: `Read the damaged store (never writing it) with psbase's own bounded page
walker, and write every record whose checksum holds into a new store at OUT,
with its ID and version, the same schema, defaults and indexes, and an ID
sequence past every ID seen. Prints how many records were saved, then every
lost record and every damaged page, and why. Exit code 0 if nothing was lost,
7 if anything was (OUT is written either way). Then check OUT and move it into
place; keep the damaged file until you have.`,
		Example: `  psbase check jobs.db || psbase recover jobs.db jobs.recovered.db
  psbase check jobs.recovered.db && mv jobs.db jobs.damaged.db && mv jobs.recovered.db jobs.db`,
		Args: exactArgs(2, "DAMAGED OUT"),
		RunE: func(c *cobra.Command, args []string) error {
			if isStoreURL(args[0]) {
				// Recover walks a damaged file's pages; a remote store
				// has no file (psbase check URL checks it).
				return fmt.Errorf("%w: recover needs a local store; %s is remote (psbase check checks it)",
					psbase.ErrUnsupported, redactURL(args[0]))
			}
			opts := a.opts()
			if force {
				opts = append(opts, psbase.WithOverwrite())
			}
			rep, err := psbase.Recover(c.Context(), args[0], args[1], opts...)
			if err != nil {
				return err
			}
			if f, _ := a.outFormat(); f == "json" {
				lost := make([]string, len(rep.Lost))
				for i, p := range rep.Lost {
					lost[i] = p.String()
				}
				w := &rowWriter{format: "json", cols: []string{"ok", "recovered", "lost", "damage", "next_id"}, w: a.stdout}
				if err := w.writeRow([]any{rep.OK(), rep.Recovered, lost, rep.Damage, rep.NextID}); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(a.stdout, "recovered: %d record(s) into %s, %d lost, %d damaged page(s)\n",
					rep.Recovered, args[1], len(rep.Lost), len(rep.Damage))
				for _, p := range rep.Lost {
					fmt.Fprintf(a.stdout, "lost: %s\n", p)
				}
				for _, d := range rep.Damage {
					fmt.Fprintf(a.stdout, "damage: %s\n", d)
				}
			}
			if !rep.OK() {
				return &codeError{code: exitCorrupt, msg: fmt.Sprintf("recover %s: %d record(s) lost, %d damaged page(s)",
					args[0], len(rep.Lost), len(rep.Damage))}
			}
			return nil
		},
	}
	c.Flags().BoolVar(&force, "force", false, "replace OUT if it exists")
	return c
}

func (a *app) backupCmd() *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "backup DB FILE",
		Short: "Write a consistent copy of the store, while others keep reading",
		Long: `Copy the store to FILE under the shared lock (readers carry on, writers wait
while it copies): into FILE.partial first, fsynced, checked as "psbase check"
checks a store, then renamed into place. FILE is itself a store: open it, or
put it back with "psbase restore". Prints the bytes written.`,
		Example: `  psbase backup jobs.db /backups/jobs-$(date +%F).db`,
		Args:    exactArgs(2, "DB FILE"),
		RunE: a.withStore(func(ctx context.Context, s *psbase.Store, args []string) error {
			var opts []psbase.Option
			if force {
				opts = append(opts, psbase.WithOverwrite())
			}
			n, err := s.BackupFile(ctx, args[1], opts...)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.stdout, "backed up: %d bytes to %s\n", n, args[1])
			return err
		}),
	}
	c.Flags().BoolVar(&force, "force", false, "replace FILE if it exists")
	return c
}

func (a *app) restoreCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "restore DB FILE",
		Short: "Replace the store with a backup, under the exclusive lock",
		Long: `Check the backup FILE (a damaged one is refused with exit code 7 and nothing
changes), then, under the store's exclusive lock, copy it beside the store,
fsync it, give it the store's owner, group and mode, and rename it over the
store. Every record written since the backup is gone.`,
		Example: `  psbase restore jobs.db /backups/jobs-2026-12-01.db`,
		Args:    exactArgs(2, "DB FILE"),
		RunE: a.withStore(func(ctx context.Context, s *psbase.Store, args []string) error {
			if err := s.Restore(ctx, args[1]); err != nil {
				return err
			}
			a.infof("restored %s from %s", args[0], args[1])
			return nil
		}),
	}
}

func (a *app) cleanupCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "cleanup DB",
		Short: "Compact the store file",
		Long: `Compact the store: copy the live data to a new file and rename it over the
old one, under the exclusive lock (other processes wait, then carry on with
the new file). Prints the sizes before and after.`,
		Example: `  psbase cleanup jobs.db`,
		Args:    exactArgs(1, "DB"),
		RunE: a.withStore(func(ctx context.Context, s *psbase.Store, args []string) error {
			res, err := s.Cleanup(ctx)
			if err != nil {
				return err
			}
			if f, _ := a.outFormat(); f == "json" {
				w := &rowWriter{format: "json", cols: []string{"before", "after", "reclaimed", "records"}, w: a.stdout}
				return w.writeRow([]any{res.Before, res.After, res.Reclaimed, res.Records})
			}
			_, err = fmt.Fprintf(a.stdout, "compacted: %d -> %d bytes (reclaimed %d), %d record(s)\n",
				res.Before, res.After, res.Reclaimed, res.Records)
			return err
		}),
	}
}

func (a *app) statsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "stats DB",
		Short: "Print the store's size, record count and format",
		Example: `  psbase stats jobs.db
  psbase stats jobs.db --json | jq .records`,
		Args: exactArgs(1, "DB"),
		RunE: a.withStore(func(ctx context.Context, s *psbase.Store, args []string) error {
			st, err := s.Stats(ctx)
			if err != nil {
				return err
			}
			keys := []string{"path", "records", "file_size", "format_version", "fields", "next_id", "created", "lock_wait_ms"}
			vals := []any{st.Path, st.Records, st.FileSize, st.FormatVersion, len(st.Schema), st.NextID,
				st.Created, float64(st.LastLockWait.Microseconds()) / 1000}
			if st.Created.IsZero() {
				vals[6] = nil
			}
			if f, _ := a.outFormat(); f == "json" {
				w := &rowWriter{format: "json", cols: keys, w: a.stdout}
				return w.writeRow(vals)
			}
			w := a.newRowWriter([]string{"stat", "value"})
			for i, k := range keys {
				if err := w.writeRow([]any{k, vals[i]}); err != nil {
					return err
				}
			}
			return w.flush()
		}),
	}
}

func (a *app) locksCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "locks DB",
		Short: "Show who holds and who waits for the store's lock",
		Long: `Show the processes holding or waiting for the store's lock right now: pid,
mode (exclusive or shared), state (holding or waiting), the operation when
recorded, for how long, and the command line. It does not take the lock
itself, so it works while a hung process holds it. Linux reads /proc/locks;
elsewhere the list may be empty.

On a store URL (etcd://HOST:PORT/NAME) it asks the cluster: the holder, then
the waiters in the order they get the lock, each with its host, pid,
operation, start time and lease (etcdctl lease revoke LEASE frees a store
whose holder is stuck). --timeout bounds connecting.`,
		Example: `  psbase locks jobs.db
  psbase locks jobs.db --json
  psbase locks etcd://127.0.0.1:2379/jobs`,
		Args: exactArgs(1, "DB"),
		RunE: func(c *cobra.Command, args []string) error {
			path := args[0]
			if isStoreURL(path) {
				return a.remoteLocks(c.Context(), path)
			}
			if fi, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%w: no file at %s", psbase.ErrNotExist, path)
			} else if err == nil && fi.IsDir() {
				return fmt.Errorf("%w: %s is a directory", psbase.ErrNotExist, path)
			}
			holders, err := psbase.LockHolders(path)
			if err != nil {
				return err
			}
			now := time.Now()
			w := a.newRowWriter([]string{"pid", "mode", "state", "op", "for", "since", "command"})
			for _, h := range holders {
				mode, state := "shared", "holding"
				if h.Exclusive {
					mode = "exclusive"
				}
				if h.Waiting {
					state = "waiting"
				}
				var age, since any
				if !h.Since.IsZero() {
					age = now.Sub(h.Since).Round(time.Millisecond).String()
					since = h.Since
				}
				if err := w.writeRow([]any{h.PID, mode, state, h.Op, age, since, h.Command}); err != nil {
					return err
				}
			}
			if len(holders) == 0 {
				a.infof("no process holds or waits for the lock of %s", path)
			}
			return w.flush()
		},
	}
}
