package psbase

import (
	"context"
	"fmt"
	"testing"
)

// Keyset pagination against Offset (go test -run '^$' -bench Paging): a
// page of 100 records out of 100 000, at page 0, 100 and 999, in ID order
// and in the order of an indexed field. With Offset the cost grows with the
// page number (every skipped record is read); with Query.After it stays
// flat.
func BenchmarkPaging(b *testing.B) {
	const n, size = 100_000, 100
	s := benchStore(b, n, true) // "u" = i, unique index
	ctx := context.Background()
	orders := map[string][]Order{"id": nil, "indexed": {Asc("u")}}
	for _, name := range []string{"id", "indexed"} {
		order := orders[name]
		all, err := s.Select(ctx, Query{OrderBy: order, Fields: []string{"u"}})
		if err != nil || len(all) != n {
			b.Fatalf("select all: %d %v", len(all), err)
		}
		for _, page := range []int{0, 100, 999} {
			b.Run(fmt.Sprintf("order=%s/how=offset/page=%d", name, page), func(b *testing.B) {
				q := Query{OrderBy: order, Offset: page * size, Limit: size}
				for b.Loop() {
					recs, err := s.Select(ctx, q)
					if err != nil || len(recs) != size || recs[0].ID != all[page*size].ID {
						b.Fatalf("page %d: %d records, %v", page, len(recs), err)
					}
				}
			})
			b.Run(fmt.Sprintf("order=%s/how=after/page=%d", name, page), func(b *testing.B) {
				q := Query{OrderBy: order, Limit: size}
				if page > 0 {
					q.After = &all[page*size-1]
				}
				for b.Loop() {
					recs, err := s.Select(ctx, q)
					if err != nil || len(recs) != size || recs[0].ID != all[page*size].ID {
						b.Fatalf("page %d: %d records, %v", page, len(recs), err)
					}
				}
			})
		}
	}
}
