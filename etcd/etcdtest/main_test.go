package etcdtest

// main_test.go: the test binary is also the members' binary.
//
// May touch: nothing.

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	Main()
	os.Exit(m.Run())
}
