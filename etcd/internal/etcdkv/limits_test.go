package etcdkv

// limits_test.go: ErrTxTooLarge at both of etcd's limits, before anything
// is sent and with nothing written; the negative control sends the same
// transactions with the check off and shows the server refuses them too (so
// the client's limits are the server's, not looser).
//
// May touch: stores of its own names on the shared cluster.

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/psbase/psbase"
	"github.com/psbase/psbase/internal/kv"
)

func TestTxTooLarge(t *testing.T) {
	c := cluster(t)
	ctx := tctx(t)
	for _, check := range []bool{true, false} {
		t.Run(fmt.Sprintf("check=%v", check), func(t *testing.T) {
			b := open(t, c.Endpoints(), storeName(t), func(cfg *Config) { cfg.weak.noLimits = !check })
			puts := func(n, size int) error {
				return b.Update(ctx, "puts", func(tx kv.Tx) error {
					bk := tx.Bucket([]byte("r"))
					if bk == nil {
						bk, _ = tx.CreateBucket([]byte("r"))
					}
					for i := range n {
						if err := bk.Put(fmt.Appendf(nil, "k%04d", i), make([]byte, size)); err != nil {
							return err
						}
					}
					return nil
				})
			}
			absent := func(key string) {
				t.Helper()
				if err := b.View(ctx, func(tx kv.Tx) error {
					if bk := tx.Bucket([]byte("r")); bk != nil && bk.Get([]byte(key)) != nil {
						t.Errorf("%s was written by a refused transaction", key)
					}
					return nil
				}); err != nil {
					t.Fatal(err)
				}
			}
			// At the limits: 128 operations (127 puts and the bucket's
			// marker), and a request just under 1.5 MiB, commit.
			if err := puts(127, 10); err != nil {
				t.Fatalf("128 operations: %v", err)
			}
			if err := puts(1, DefaultMaxRequestBytes-1024); err != nil {
				t.Fatalf("a request of 1.5 MiB - 1 KiB: %v", err)
			}
			// Above them: refused whole.
			err := puts(129, 10)
			if check {
				var te *TxTooLargeError
				if !errors.Is(err, psbase.ErrTxTooLarge) || !errors.As(err, &te) || te.Limit != "operations" || te.Max != 128 {
					t.Fatalf("129 operations: %v, want ErrTxTooLarge naming 128 operations", err)
				}
				t.Log(err)
			} else if err == nil || !strings.Contains(err.Error(), "too many operations") {
				t.Fatalf("129 operations sent anyway: %v, want the server's refusal", err)
			}
			absent("k0128")
			err = puts(1, DefaultMaxRequestBytes)
			if check {
				var te *TxTooLargeError
				if !errors.Is(err, psbase.ErrTxTooLarge) || !errors.As(err, &te) || te.Limit != "request bytes" || te.Max != DefaultMaxRequestBytes {
					t.Fatalf("1.5 MiB value: %v, want ErrTxTooLarge naming request bytes", err)
				}
				t.Log(err)
			} else if err == nil || !strings.Contains(err.Error(), "too large") {
				t.Fatalf("1.5 MiB value sent anyway: %v, want the server's refusal", err)
			}
			if err := b.View(ctx, func(tx kv.Tx) error {
				if v := tx.Bucket([]byte("r")).Get([]byte("k0000")); len(v) != DefaultMaxRequestBytes-1024 {
					t.Errorf("k0000 holds %d bytes after a refused transaction, want the last committed %d", len(v), DefaultMaxRequestBytes-1024)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		})
	}
}
