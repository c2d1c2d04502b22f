package psbase

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The cost of a hot backup per byte (go test -run '^$' -bench Backup .):
// writers wait for the whole copy, so its MB/s says how long they wait per
// GB of store — Backup to io.Discard (reading the store: the time the shared
// lock is held) and BackupFile (also writing, fsyncing and checking the
// copy; the lock is held for the copy only).
func BenchmarkBackup(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	s, err := Create(ctx, filepath.Join(dir, "big.db"), []Field{{Name: "n", Type: Int}, {Name: "payload", Type: String}}, WithNoSync())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	payload := strings.Repeat("x", 1000)
	const records, batch = 32_000, 8_000 // about 40 MB
	for start := 0; start < records; start += batch {
		err := s.Txn(ctx, func(tx *Tx) error {
			for i := start; i < start+batch; i++ {
				if _, err := tx.Insert(Values{"n": i, "payload": payload}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	fi, err := os.Stat(s.Path())
	if err != nil {
		b.Fatal(err)
	}
	b.Run("to-discard", func(b *testing.B) {
		b.SetBytes(fi.Size())
		for b.Loop() {
			if _, err := s.Backup(ctx, io.Discard); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(b.Elapsed().Seconds()/float64(b.N)*float64(1<<30)/float64(fi.Size()), "s/GB")
	})
	b.Run("to-file", func(b *testing.B) {
		b.SetBytes(fi.Size())
		i := 0
		for b.Loop() {
			i++
			if _, err := s.BackupFile(ctx, filepath.Join(dir, fmt.Sprintf("copy%d.db", i))); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(b.Elapsed().Seconds()/float64(b.N)*float64(1<<30)/float64(fi.Size()), "s/GB")
	})
}
