package main

// workers.go: which binary each worker process runs. The local systems'
// workers must not carry etcd: a binary that links etcd's server and client
// (this one, for psbase-etcd) costs every process it starts page faults and
// CPU well after its start — measured on 2 cores, 200 writer processes:
// psbase 2,200–3,700 inserts/s from this binary against 4,800–6,300/s from
// one without etcd, in the same run. So the run builds this package again
// with the tag noetcd for the local workers, and only the etcd systems'
// workers and members run this binary.
//
// May touch: the run's data directory (the binary it builds there).

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// localWorkers returns the binary the local systems' workers run: self when
// self has no etcd, else this package built with the tag noetcd into dir.
// When that cannot be built (no Go toolchain or no source beside the
// binary), it returns self and says why: the figures are then those of a
// binary with etcd linked, which the report states.
func localWorkers(self, dir string) (bin, note string) {
	if !withEtcd {
		return self, "this binary (built without etcd)"
	}
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return self, "this binary, etcd linked (its source directory is unknown)"
	}
	src := filepath.Dir(file)
	if mod, err := os.ReadFile(filepath.Join(src, "go.mod")); err != nil || !strings.Contains(string(mod), "module github.com/psbase/psbase/bench") {
		return self, "this binary, etcd linked (no bench source at " + src + ")"
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return self, "this binary, etcd linked (no go command to build the local workers)"
	}
	bin = filepath.Join(dir, "psbench-local")
	start := time.Now()
	cmd := exec.Command(goCmd, "build", "-tags", "noetcd", "-o", bin, ".")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		return self, fmt.Sprintf("this binary, etcd linked (go build -tags noetcd failed: %v: %s)", err, strings.TrimSpace(string(out)))
	}
	return bin, fmt.Sprintf("psbench built with -tags noetcd (no etcd linked) in %.1fs", time.Since(start).Seconds())
}

// workerBinary is the binary sys's workers run.
func (r *runner) workerBinary(sys string) string {
	if isEtcd(sys) {
		return r.self
	}
	return r.local
}
