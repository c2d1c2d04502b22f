package psbase_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/psbase/psbase"
	"github.com/psbase/psbase/storm"
)

// Kill -9 in the middle of indexed writes and of an index build: every
// acknowledged write is there once, the indexes agree with the records
// (Check), and the lock is free afterwards.

var stormIndexFields = []psbase.Field{
	{Name: "token", Type: psbase.String, Unique: true},
	{Name: "task", Type: psbase.Int, Indexed: true},
	{Name: "n", Type: psbase.Int},
}

func TestStormKillIndexedWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("process storm")
	}
	ctx := context.Background()
	res := storm.Run(t, storm.Config{
		Procs:            20,
		TolerateFailures: true,
		Timeout:          60 * time.Second,
		Chaos:            storm.Chaos{KillFraction: 0.3, KillWindow: storm.Window{From: 5 * time.Millisecond, To: 150 * time.Millisecond}},
		Setup: func(dir string, _ int) error {
			s, err := psbase.Create(ctx, filepath.Join(dir, "ix.db"), stormIndexFields)
			if err != nil {
				return err
			}
			return s.Close()
		},
	}, func(w *storm.Worker) error {
		s, err := psbase.Open(ctx, filepath.Join(w.Dir, "ix.db"))
		if err != nil {
			return err
		}
		for i := range 30 {
			token := fmt.Sprintf("t%d-%d", w.Task, i)
			op := w.Invoke("insert", token)
			w.Phase("wait-lock")
			var id uint64
			err := s.Txn(ctx, func(tx *psbase.Tx) error {
				w.Phase("in-tx")
				var err error
				if id, _, err = tx.Upsert("token", psbase.Values{"token": token, "task": w.Task, "n": i}); err != nil {
					return err
				}
				// An indexed update too (through the task index), so kills
				// land in both kinds of write.
				recs, err := tx.Select(psbase.Query{Where: []psbase.Filter{psbase.Eq("task", w.Task)}, Limit: 1})
				if err != nil || len(recs) == 0 {
					return err
				}
				_, err = tx.UpdateByID(recs[0].ID, psbase.Values{"n": recs[0].Values["n"].(int64) + 1})
				return err
			})
			w.Phase("after-commit")
			if err != nil {
				w.Fail(op, err)
				return err
			}
			w.Ok(op, id)
		}
		return nil
	})
	for _, l := range res.Loops {
		s, err := psbase.Open(ctx, filepath.Join(l.Dir, "ix.db"), psbase.WithLockTimeout(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var final []storm.Record
		err = s.ForEach(ctx, func(r psbase.Record) error {
			final = append(final, storm.Record{ID: r.ID, Value: r.Values["token"]})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := storm.CheckSet(l.History.Key("insert"), final); err != nil {
			t.Error(err)
		}
		if rep, err := s.Check(ctx); err != nil {
			t.Errorf("check after kills: %v %v", err, rep.Problems)
		}
		t.Logf("kills %d (phases %v), records %d", len(l.Kills), l.KillPhases(), len(final))
		if len(l.Kills) == 0 {
			t.Error("no kill landed")
		}
	}
}

func TestStormKillIndexBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("process storm")
	}
	ctx := context.Background()
	const records = 150_000
	var buildTime time.Duration
	res := storm.Run(t, storm.Config{
		Procs:            1,
		TolerateFailures: true,
		Timeout:          60 * time.Second,
		Chaos:            storm.Chaos{KillFraction: 1, KillWindow: storm.Window{From: 30 * time.Millisecond, To: 120 * time.Millisecond}},
		Setup: func(dir string, _ int) error {
			s, err := psbase.Create(ctx, filepath.Join(dir, "big.db"), []psbase.Field{{Name: "task", Type: psbase.Int}, {Name: "n", Type: psbase.Int}})
			if err != nil {
				return err
			}
			err = s.Txn(ctx, func(tx *psbase.Tx) error {
				for i := range records {
					if _, err := tx.Insert(psbase.Values{"task": i % 1000, "n": i}); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			// How long a build takes here, so the kill window is inside it.
			start := time.Now()
			if err := s.CreateIndex(ctx, "n"); err != nil {
				return err
			}
			buildTime = time.Since(start)
			return s.DropIndex(ctx, "n")
		},
	}, func(w *storm.Worker) error {
		s, err := psbase.Open(ctx, filepath.Join(w.Dir, "big.db"))
		if err != nil {
			return err
		}
		w.Phase("building")
		return s.CreateIndex(ctx, "task")
	})
	l := res.Loops[0]
	t.Logf("an index build takes %v here; kills: %+v", buildTime, l.Kills)
	if len(l.Kills) != 1 || l.Kills[0].Phase != "building" || !l.Kills[0].Landed {
		t.Fatalf("the kill did not land during the build: %+v", l.Kills)
	}
	s, err := psbase.Open(ctx, filepath.Join(l.Dir, "big.db"), psbase.WithLockTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := s.Check(ctx); err != nil {
		t.Fatalf("check after a killed build: %v %v", err, rep.Problems)
	}
	if p, _ := s.Explain(ctx, psbase.Query{Where: []psbase.Filter{psbase.Eq("task", 5)}}); p.Index != "" {
		t.Fatalf("a killed build left an index in the schema: %v", p)
	}
	// The lock is free and the build can be done again.
	if err := s.CreateIndex(ctx, "task"); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Count(ctx, psbase.Eq("task", 5)); err != nil || n != records/1000 {
		t.Fatalf("count %d %v", n, err)
	}
	if _, err := s.Check(ctx); err != nil && !errors.Is(err, psbase.ErrCorrupt) {
		t.Fatal(err)
	}
}
