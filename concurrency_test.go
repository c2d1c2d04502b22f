package psbase_test

import (
	"errors"
	"testing"
	"time"

	"github.com/psbase/psbase"
	"github.com/psbase/psbase/storm"
)

var ccCounterFields = []psbase.Field{{Name: "n", Type: psbase.Int}}

const ccCounterID = 1

// TestStormCounter: 50 processes × K increments of one record.
func TestStormCounter(t *testing.T) {
	ccSkipShort(t)
	procs, k := ccPick(50, 100), ccPick(20, 50)
	setup := func(dir string, loop int) error {
		return ccCreate(dir, ccCounterFields, psbase.Values{"n": 0})
	}
	t.Run("txn", func(t *testing.T) {
		res := storm.Run(t, storm.Config{Procs: procs, Timeout: 2 * time.Minute, Setup: setup}, func(w *storm.Worker) error {
			s, err := ccOpen(w)
			if err != nil {
				return err
			}
			for i := 0; i < k; i++ {
				id := w.Invoke("counter", 1)
				w.Phase("wait-lock")
				err := s.Txn(ccCtx, func(tx *psbase.Tx) error {
					w.Phase("in-tx")
					r, err := tx.Get(ccCounterID)
					if err != nil {
						return err
					}
					_, err = tx.UpdateByID(ccCounterID, psbase.Values{"n": ccInt(r.Values["n"]) + 1})
					return err
				})
				w.Phase("after-commit")
				if err != nil {
					return err // outcome left unknown
				}
				w.Ok(id, nil)
			}
			return nil
		})
		l := ccOnly(t, res)
		ccLogLoop(t, "counter/txn", l)
		s := ccParentStore(t, l.Dir)
		ccCheck(t, s)
		final := ccIntField(t, s, ccCounterID, "n")
		t.Logf("counter/txn: final %d of %d increments", final, procs*k)
		if err := storm.CheckCounter(l.History.Key("counter"), final); err != nil {
			t.Error(err)
		}
		if final != int64(procs*k) {
			t.Errorf("final %d, want %d", final, procs*k)
		}
	})
	_ = errors.Is
}
