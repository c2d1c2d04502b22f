package main

// etcd_test.go: the psbase-etcd plumbing that needs no cluster — each
// worker prefers a different member (its URL names that member alone, with
// the store's name and query kept), and the etcd systems run exactly the
// write, counter and read cells at N ≤ 50. Each check also runs on a broken
// variant, which it must reject.
//
// May touch: nothing.

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
)

// checkPreferred checks that workers 0..5 of a 3-member URL talk to
// members 0, 1, 2, 0, 1, 2, each alone, and keep the store and the query.
func checkPreferred(prefer func(string, int) string) error {
	const full = "etcd://127.0.0.1:1,127.0.0.1:2,127.0.0.1:3/write?max_txn_ops=4096&max_request_bytes=8388608"
	for i := range 6 {
		got := prefer(full, i)
		want := fmt.Sprintf("etcd://127.0.0.1:%d/write?max_txn_ops=4096&max_request_bytes=8388608", i%3+1)
		if got != want {
			return fmt.Errorf("worker %d: %s, want %s", i, got, want)
		}
		if _, err := url.Parse(got); err != nil {
			return fmt.Errorf("worker %d: %s: %v", i, got, err)
		}
	}
	return nil
}

func TestPreferEndpoint(t *testing.T) {
	if err := checkPreferred(preferEndpoint); err != nil {
		t.Fatal(err)
	}
	// Broken variant: every worker gets the whole list (the client would
	// balance each over all members: no preference).
	if err := checkPreferred(func(u string, _ int) string { return u }); err == nil {
		t.Fatal("the check accepted a URL that lists every member")
	}
	// Broken variant: every worker the first member.
	first := func(u string, _ int) string { return preferEndpoint(u, 0) }
	if err := checkPreferred(first); err == nil {
		t.Fatal("the check accepted every worker on member 0")
	}
}

// checkEtcdCells checks that in the full plan psbase-etcd runs write,
// counter (both variants) and read at N = 1, 8 and 50 and nothing else,
// next to local psbase in each of them.
func checkEtcdCells(runs func(string, cellSpec) bool) error {
	want := map[string]bool{}
	for _, sc := range []string{scWrite, scCounter, scCounterTxn, scRead} {
		for _, n := range []int{1, 8, 50} {
			want[fmt.Sprintf("%s N=%d", sc, n)] = true
		}
	}
	got := map[string]bool{}
	for _, g := range plan(false, strings.Split("write,counter,read,burst,size", ",")) {
		for _, cs := range g.cells {
			if !runs(sysPsbaseEtcd, cs) {
				continue
			}
			got[cs.Label()] = true
			if !runs(sysPsbase, cs) {
				return fmt.Errorf("%s runs psbase-etcd without local psbase", cs.Label())
			}
		}
	}
	for l := range want {
		if !got[l] {
			return fmt.Errorf("psbase-etcd does not run %s", l)
		}
	}
	for l := range got {
		if !want[l] {
			return fmt.Errorf("psbase-etcd runs %s", l)
		}
	}
	return nil
}

func TestEtcdCells(t *testing.T) {
	if err := checkEtcdCells(runsIn); err != nil {
		t.Fatal(err)
	}
	// Broken variant: the N ≤ 50 limit forgotten (write N=200, burst, the
	// size cells would start hundreds of etcd clients).
	everywhere := func(sys string, cs cellSpec) bool { return len(cs.Only) == 0 || runsIn(sys, cs) }
	if err := checkEtcdCells(everywhere); err == nil {
		t.Fatal("the check accepted psbase-etcd in every cell")
	}
}
