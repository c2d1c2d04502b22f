package etcdtest

// log.go: a client logger that keeps the tests' output readable.
//
// May touch: nothing.

import "go.uber.org/zap"

// quietLogger is the etcd client's logger for the harness: errors only.
func quietLogger() *zap.Logger {
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(zap.ErrorLevel)
	cfg.OutputPaths = []string{"stderr"}
	l, err := cfg.Build()
	if err != nil {
		return zap.NewNop()
	}
	return l
}
