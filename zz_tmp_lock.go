package psbase

// TEMPORARY stand-in for pslock.go while it is being written elsewhere.

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/gofrs/flock"
)

type lockProtocol int

const (
	protoDefault lockProtocol = iota
	protoTurnstile
	protoExclusiveOnly
	protoPlain
)

type lockConfig struct {
	FileMode       os.FileMode
	AllowNetworkFS bool
	Logger         *slog.Logger
	Protocol       lockProtocol
}

type fileLock struct {
	path string
	cfg  lockConfig
}

var tmpMu sync.Mutex
var tmpLocks = map[string]*sync.RWMutex{}

func newFileLock(dbPath string, cfg lockConfig) (*fileLock, error) {
	return &fileLock{path: dbPath + ".lock", cfg: cfg}, nil
}

func (l *fileLock) acquire(ctx context.Context, exclusive bool, op string) (func(), time.Duration, error) {
	tmpMu.Lock()
	m := tmpLocks[l.path]
	if m == nil {
		m = &sync.RWMutex{}
		tmpLocks[l.path] = m
	}
	tmpMu.Unlock()
	start := time.Now()
	if exclusive {
		m.Lock()
	} else {
		m.RLock()
	}
	f := flock.New(l.path, flock.SetFlag(os.O_CREATE|os.O_RDWR), flock.SetPermissions(l.cfg.FileMode))
	var err error
	if exclusive {
		err = f.Lock()
	} else {
		err = f.RLock()
	}
	unl := func() {
		if exclusive {
			m.Unlock()
		} else {
			m.RUnlock()
		}
	}
	if err != nil {
		unl()
		return nil, 0, err
	}
	var once sync.Once
	return func() { once.Do(func() { f.Unlock(); unl() }) }, time.Since(start), nil
}

func (l *fileLock) removeFiles() error { return os.Remove(l.path) }

func LockHolders(dbPath string) ([]LockHolder, error) { return nil, nil }
