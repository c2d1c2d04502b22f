package lock

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Holders on a live holder and a waiter, with the record merged in.
func TestHoldersLive(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc/locks")
	}
	db := filepath.Join(t.TempDir(), "h.db")
	holder := startChild(t, helper{mode: "hold", db: db, args: map[string]string{"OP": "compact"}})
	hpid, _ := strconv.Atoi(holder.expect(t, "held", 10*time.Second))
	waiter := startChild(t, helper{mode: "hold", db: db, args: map[string]string{"OP": "insert"}})
	var hs []Holder
	for range 200 { // until the waiter is queued in the kernel
		var err error
		if hs, err = Holders(db + ".lock"); err != nil {
			t.Fatal(err)
		}
		// Until the waiter is queued and the holder's record (written once
		// the hold passes recordDelay) is merged in.
		if len(hs) == 2 && slices.ContainsFunc(hs, func(h Holder) bool { return h.Waiting }) &&
			slices.ContainsFunc(hs, func(h Holder) bool { return !h.Waiting && h.Op != "" }) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("holders: %v", hs)
	if len(hs) != 2 {
		t.Fatalf("Holders = %v, want the holder and the waiter", hs)
	}
	h := hs[slices.IndexFunc(hs, func(h Holder) bool { return !h.Waiting })]
	host, _ := os.Hostname()
	if h.PID != hpid || !h.Exclusive || h.Op != "compact" || h.Host != host ||
		time.Since(h.Since) > time.Minute || !strings.Contains(h.Command, filepath.Base(os.Args[0])) {
		t.Fatalf("holder = %+v", h)
	}
	w := hs[slices.IndexFunc(hs, func(h Holder) bool { return h.Waiting })]
	if w.PID != waiter.cmd.Process.Pid || !w.Exclusive {
		t.Fatalf("waiter = %+v", w)
	}
	b, _ := os.ReadFile(db + ".lock")
	t.Logf("lock file while held: %q", b)
	holder.wait(t)
	waiter.expect(t, "held", 10*time.Second)
	waiter.wait(t)
	if b, _ := os.ReadFile(db + ".lock"); len(b) != 0 {
		t.Fatalf("lock file not emptied on release: %q", b)
	}
}

// 8c. /proc/locks parsing and the holder record, as pure functions.
func TestParseProcLocks(t *testing.T) {
	const text = `1: FLOCK  ADVISORY  WRITE 1234 08:01:131090 0 EOF
1: -> FLOCK  ADVISORY  WRITE 1235 08:01:131090 0 EOF
1: -> FLOCK  ADVISORY  READ  1236 08:01:131090 0 EOF
2: FLOCK  ADVISORY  READ  2000 08:01:131091 0 EOF
3: POSIX  ADVISORY  WRITE 3000 08:01:131090 0 EOF
4: OFDLCK ADVISORY  READ  -1 08:01:131090 0 EOF
5: FLOCK  ADVISORY  READ  4000 fd:01:131090 0 EOF
6: FLOCK  ADVISORY  READ  5000 103:02:77 0 EOF
7: FLOCK  ADVISORY  READ  5001 103:02:77 0 EOF
8: LEASE  ACTIVE    READ  6000 08:01:131090 0 EOF
9: FLOCK  ADVISORY  WRITE -1 00:2a:99 0 EOF
garbage
`
	for _, c := range []struct {
		major, minor uint32
		ino          uint64
		want         []Holder
	}{
		{8, 1, 131090, []Holder{{PID: 1234, Exclusive: true}, {PID: 1235, Exclusive: true, Waiting: true}, {PID: 1236, Waiting: true}}},
		{8, 1, 131091, []Holder{{PID: 2000}}},
		{0xfd, 1, 131090, []Holder{{PID: 4000}}},
		{0x103, 2, 77, []Holder{{PID: 5000}, {PID: 5001}}},
		{0, 0x2a, 99, []Holder{{PID: 0, Exclusive: true}}},
		{8, 1, 1, nil},
	} {
		got := parseProcLocks([]byte(text), c.major, c.minor, c.ino)
		if !slices.Equal(got, c.want) {
			t.Errorf("parseProcLocks(%x:%x:%d) = %+v, want %+v", c.major, c.minor, c.ino, got, c.want)
		}
	}

	since := time.Date(2025, 11, 22, 4, 41, 0, 123456789, time.UTC)
	rec := formatRecord(Holder{PID: 42, Host: "my host", Op: "insert", Since: since})
	if string(rec) != "pid=42 host=my_host op=insert since=2025-11-22T04:41:00.123456789Z\n" {
		t.Fatalf("record = %q", rec)
	}
	h, ok := parseRecord(append([]byte("\x00"), rec...))
	if !ok || h != (Holder{PID: 42, Host: "my_host", Op: "insert", Since: since, Exclusive: true}) {
		t.Fatalf("parseRecord = %+v %v", h, ok)
	}
	for _, bad := range []string{"", "\x00\x00", "hello world", "pid=x", "pid=0 op=a"} {
		if _, ok := parseRecord([]byte(bad)); ok {
			t.Errorf("parseRecord(%q) ok", bad)
		}
	}
	// Merge: the record fills in the exclusive holder; a stale one is dropped.
	sys := []Holder{{PID: 42, Exclusive: true}, {PID: 43, Waiting: true}}
	got := mergeRecord(slices.Clone(sys), h, true)
	if got[0].Op != "insert" || got[0].Host != "my_host" || got[1].Op != "" {
		t.Fatalf("merge = %+v", got)
	}
	stale := h
	stale.PID = 7
	if got := mergeRecord(slices.Clone(sys), stale, true); got[0].Op != "" {
		t.Fatalf("stale record merged: %+v", got)
	}
	if got := mergeRecord([]Holder{{PID: 0, Exclusive: true}}, h, true); got[0].PID != 42 {
		t.Fatalf("record pid not used for an unknown pid: %+v", got)
	}
}
