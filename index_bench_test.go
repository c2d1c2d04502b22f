package psbase

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
)

// Issue 3's scaling claims, as benchmarks (go test -run '^$' -bench Index):
//
//   - an indexed equality select stays O(log n + k): ns/op at 10 k, 100 k
//     and 1 M records within 2x of each other, while the unindexed select
//     grows linearly;
//   - a durable insert into a table with two indexes costs at most 1.3x one
//     without indexes.

// benchStore builds a store of n records with field "u" = i (distinct) and
// "k" = i % 1000, and an optional index on u.
func benchStore(b *testing.B, n int, indexed bool) *Store {
	b.Helper()
	ctx := context.Background()
	s, err := Create(ctx, filepath.Join(b.TempDir(), "bench.db"), []Field{
		{Name: "k", Type: Int}, {Name: "u", Type: Int}, {Name: "payload", Type: String},
	}, WithNoSync())
	if err != nil {
		b.Fatal(err)
	}
	const batch = 20000
	for start := 0; start < n; start += batch {
		err := s.Txn(ctx, func(tx *Tx) error {
			for i := start; i < min(start+batch, n); i++ {
				if _, err := tx.Insert(Values{"k": i % 1000, "u": i, "payload": "some payload bytes"}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	if indexed {
		if err := s.CreateIndex(ctx, "u", Unique()); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

func BenchmarkIndexSelectEq(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		for _, indexed := range []bool{true, false} {
			if !indexed && n > 100_000 {
				continue // a 1 M-record full scan per op only makes the run slow
			}
			name := fmt.Sprintf("records=%d/indexed=%v", n, indexed)
			b.Run(name, func(b *testing.B) {
				s := benchStore(b, n, indexed)
				ctx := context.Background()
				q := Query{Where: []Filter{Eq("u", n/2)}}
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					recs, err := s.Select(ctx, q)
					if err != nil || len(recs) != 1 {
						b.Fatalf("%d records, %v", len(recs), err)
					}
				}
			})
		}
	}
}

func BenchmarkIndexInsertDurable(b *testing.B) {
	for _, indexes := range []int{0, 2} {
		b.Run(fmt.Sprintf("indexes=%d", indexes), func(b *testing.B) {
			ctx := context.Background()
			fields := []Field{{Name: "k", Type: Int}, {Name: "u", Type: Int}, {Name: "payload", Type: String}}
			if indexes == 2 {
				fields[0].Indexed, fields[1].Unique = true, true
			}
			s, err := Create(ctx, filepath.Join(b.TempDir(), "ins.db"), fields)
			if err != nil {
				b.Fatal(err)
			}
			for i := 0; b.Loop(); i++ {
				if _, err := s.Insert(ctx, Values{"k": i % 1000, "u": i, "payload": "some payload bytes"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
