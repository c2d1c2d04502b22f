package etcdkv

// example_test.go: a runnable example of the backend on the test cluster.
//
// May touch: a store of its own name on the shared cluster.

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/psbase/psbase/internal/kv"
)

// exampleEndpoints returns the shared test cluster's endpoints (a real
// program passes its cluster's, "10.0.0.1:2379" and so on).
func exampleEndpoints() []string {
	sharedOnce.Do(func() { sharedCluster, sharedErr = startShared() })
	if sharedErr != nil {
		panic(sharedErr)
	}
	return sharedCluster.Endpoints()
}

func ExampleBackend() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := Open(ctx, Config{
		Endpoints: exampleEndpoints(),
		Name:      "jobs-" + strconv.FormatInt(time.Now().UnixNano(), 36),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Close()
	// A writable transaction: under the store's lock, committed as one
	// etcd Txn fenced on the lock key.
	err = b.Update(ctx, "insert", func(tx kv.Tx) error {
		bk, err := tx.CreateBucket([]byte("records"))
		if err != nil {
			return err
		}
		id, _ := bk.NextSequence()
		return bk.Put([]byte(strconv.FormatUint(id, 10)), []byte("backup"))
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	// A read-only transaction: one snapshot, no lock.
	_ = b.View(ctx, func(tx kv.Tx) error {
		c := tx.Bucket([]byte("records")).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			fmt.Printf("%s=%s\n", k, v)
		}
		return nil
	})
	// Output: 1=backup
}
