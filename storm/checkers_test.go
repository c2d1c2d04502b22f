package storm_test

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/psbase/psbase/storm"
)

// hop builds a hand-made history entry.
func hop(task int, key string, in, out any, st storm.Status, call, ret int64) storm.Op {
	enc := func(v any) json.RawMessage {
		if v == nil {
			return nil
		}
		b, _ := json.Marshal(v)
		return b
	}
	if st == storm.StatusInfo {
		ret = 0
	}
	return storm.Op{ID: storm.OpID(int64(task)<<32 | call), Task: task, Key: key, Input: enc(in), Output: enc(out), Status: st, Call: call, Return: ret}
}

func wantAnomalies(t *testing.T, err error, n int, substr string) {
	t.Helper()
	var ce *storm.CheckError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want a CheckError containing %q", err, substr)
	}
	if len(ce.Anomalies) != n || !strings.Contains(err.Error(), substr) {
		t.Errorf("got %d anomalies, want %d with %q:\n%v", len(ce.Anomalies), n, substr, err)
	}
}

func TestCheckCounter(t *testing.T) {
	h := storm.History{
		hop(0, "c", nil, nil, storm.StatusOK, 1, 2),
		hop(1, "c", 2, nil, storm.StatusOK, 1, 3),
		hop(2, "c", nil, nil, storm.StatusInfo, 2, 0),
		hop(3, "c", 5, nil, storm.StatusFail, 2, 4),
	}
	for _, final := range []int64{3, 4} {
		if err := storm.CheckCounter(h, final); err != nil {
			t.Errorf("final %d: %v", final, err)
		}
	}
	wantAnomalies(t, storm.CheckCounter(h, 2), 1, "lost update")
	wantAnomalies(t, storm.CheckCounter(h, 5), 1, "> 4 attempted")
	wantAnomalies(t, storm.CheckCounter(storm.History{hop(0, "c", -1, nil, storm.StatusOK, 1, 2)}, 0), 1, "non-negative")
}

func TestCheckSet(t *testing.T) {
	h := storm.History{
		hop(0, "s", "a", 1, storm.StatusOK, 1, 2),
		hop(1, "s", "b", 2, storm.StatusOK, 1, 3),
		hop(2, "s", "c", nil, storm.StatusFail, 1, 3),
		hop(3, "s", "d", nil, storm.StatusInfo, 1, 0),
		hop(4, "s", "e", nil, storm.StatusOK, 1, 3), // acknowledged without an ID
	}
	legal := []storm.Record{{ID: 1, Value: "a"}, {ID: 2, Value: "b"}, {ID: 7, Value: "e"}}
	if err := storm.CheckSet(h, legal); err != nil {
		t.Errorf("legal: %v", err)
	}
	if err := storm.CheckSet(h, append(legal, storm.Record{ID: 3, Value: "d"})); err != nil {
		t.Errorf("legal with unknown present: %v", err)
	}
	cases := []struct {
		name  string
		final []storm.Record
		n     int
		want  string
	}{
		{"lost ack'd insert", []storm.Record{{ID: 2, Value: "b"}, {ID: 7, Value: "e"}}, 1, "lost: acknowledged insert \"a\""},
		{"duplicate insert", append(legal, storm.Record{ID: 9, Value: "a"}), 1, "duplicate: acknowledged insert \"a\" present 2 times"},
		{"failed insert present", append(legal, storm.Record{ID: 3, Value: "c"}), 1, "failed insert \"c\""},
		{"unknown twice", append(legal, storm.Record{ID: 3, Value: "d"}, storm.Record{ID: 4, Value: "d"}), 1, "unknown outcome present 2 times"},
		{"phantom", append(legal, storm.Record{ID: 5, Value: "z"}), 1, "phantom: \"z\""},
		{"wrong ID", []storm.Record{{ID: 2, Value: "a"}, {ID: 1, Value: "b"}, {ID: 7, Value: "e"}}, 2, "acknowledged with ID 1 but present with ID 2"},
		{"ID twice", []storm.Record{{ID: 1, Value: "a"}, {ID: 2, Value: "b"}, {ID: 2, Value: "e"}}, 1, "ID 2 present 2 times"},
		{"everything at once", []storm.Record{{Value: "b"}, {Value: "b"}, {Value: "c"}, {Value: "y"}, {Value: "z"}}, 6, "phantom: \"y\""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { wantAnomalies(t, storm.CheckSet(h, c.final), c.n, c.want) })
	}
}

func TestCheckRegister(t *testing.T) {
	w, r, cas := storm.WriteOp, storm.ReadOp, storm.CASOp
	ok, info, fail := storm.StatusOK, storm.StatusInfo, storm.StatusFail
	legal := map[string]storm.History{
		"sequential": {
			hop(0, "k", w(1), nil, ok, 1, 2),
			hop(1, "k", r(), 1, ok, 3, 4),
			hop(0, "k", cas(1, 2), true, ok, 5, 6),
			hop(1, "k", cas(1, 3), false, ok, 7, 8),
			hop(1, "k", r(), 2, ok, 9, 10),
		},
		"initial null": {hop(0, "k", r(), nil, ok, 1, 2)},
		"concurrent read sees either": {
			hop(0, "k", w(1), nil, ok, 1, 10),
			hop(1, "k", r(), nil, ok, 2, 3),
			hop(2, "k", r(), 1, ok, 4, 5),
		},
		"unknown write may take effect late": {
			hop(0, "k", w(1), nil, info, 1, 0),
			hop(1, "k", r(), nil, ok, 5, 6),
			hop(1, "k", r(), 1, ok, 7, 8),
		},
		"unknown write may never take effect": {
			hop(0, "k", w(1), nil, info, 1, 0),
			hop(1, "k", r(), nil, ok, 50, 60),
		},
		"unknown cas either way": {
			hop(0, "k", w(1), nil, ok, 1, 2),
			hop(1, "k", cas(1, 2), nil, info, 3, 0),
			hop(2, "k", r(), 1, ok, 5, 6),
			hop(2, "k", r(), 2, ok, 7, 8),
		},
		"unknown read dropped, failed write dropped": {
			hop(0, "k", r(), nil, info, 1, 0),
			hop(0, "k", w(9), nil, fail, 2, 3),
			hop(1, "k", r(), nil, ok, 4, 5),
		},
		"keys are independent": {
			hop(0, "a", w(1), nil, ok, 1, 2),
			hop(1, "b", r(), nil, ok, 3, 4),
		},
	}
	for name, h := range legal {
		if err := storm.CheckRegister(h, storm.RegisterOptions{}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	illegal := map[string]storm.History{
		"stale read": {
			hop(0, "k", w(1), nil, ok, 1, 2),
			hop(0, "k", w(2), nil, ok, 3, 4),
			hop(1, "k", r(), 1, ok, 5, 6),
		},
		"lost update (both CAS succeed)": {
			hop(0, "k", w(0), nil, ok, 1, 2),
			hop(1, "k", cas(0, 1), true, ok, 3, 4),
			hop(2, "k", cas(0, 2), true, ok, 5, 6),
		},
		"phantom write (never written)": {
			hop(1, "k", r(), 7, ok, 3, 4),
		},
		"failed write visible": {
			hop(0, "k", w(1), nil, fail, 1, 2),
			hop(1, "k", r(), 1, ok, 3, 4),
		},
		"cas false on match": {
			hop(0, "k", w(1), nil, ok, 1, 2),
			hop(1, "k", cas(1, 2), false, ok, 3, 4),
		},
		"read goes back in time": {
			hop(0, "k", w(1), nil, ok, 1, 2),
			hop(0, "k", w(2), nil, ok, 3, 20),
			hop(1, "k", r(), 2, ok, 4, 5),
			hop(2, "k", r(), 1, ok, 6, 7),
		},
	}
	for name, h := range illegal {
		t.Run(name, func(t *testing.T) {
			wantAnomalies(t, storm.CheckRegister(h, storm.RegisterOptions{}), 1, "not linearizable")
		})
	}
	// An illegal history leaves porcupine's visualization behind.
	dir := t.TempDir()
	err := storm.CheckRegister(illegal["stale read"], storm.RegisterOptions{Dir: dir, Name: "stale"})
	var ce *storm.CheckError
	if !errors.As(err, &ce) || len(ce.Visualization) != 1 {
		t.Fatalf("want one visualization: %v", err)
	}
	if fi, err := os.Stat(ce.Visualization[0]); err != nil || fi.Size() == 0 {
		t.Errorf("visualization: %v", err)
	}
	// Initial value option.
	if err := storm.CheckRegister(storm.History{hop(1, "k", r(), 0, ok, 1, 2)}, storm.RegisterOptions{Initial: 0}); err != nil {
		t.Errorf("initial 0: %v", err)
	}
}

// TestCheckRegisterTimeout: a check that cannot finish in time is a failure.
func TestCheckRegisterTimeout(t *testing.T) {
	var h storm.History
	// Many concurrent writes of distinct values and reads that force search.
	for i := 0; i < 200; i++ {
		h = append(h, hop(i, "k", storm.WriteOp(i), nil, storm.StatusOK, 1, 1000))
		h = append(h, hop(i+200, "k", storm.ReadOp(), 199-i, storm.StatusOK, 2, 999))
	}
	err := storm.CheckRegister(h, storm.RegisterOptions{Timeout: time.Nanosecond})
	if err == nil {
		t.Skip("porcupine finished within a nanosecond")
	}
	wantAnomalies(t, err, 1, "timed out")
}
