package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// machineInfo describes where the run happened.
type machineInfo struct {
	Date       string `json:"date"`
	Cores      int    `json:"cores"`
	CPU        string `json:"cpu"`
	MemoryGiB  int    `json:"memory_gib"`
	Kernel     string `json:"kernel"`
	GoVersion  string `json:"go_version"`
	DataDir    string `json:"data_dir"`
	FileSystem string `json:"file_system"`
	Device     string `json:"device"`
	Mount      string `json:"mount"`
}

func collectMachine(dataDir string) machineInfo {
	m := machineInfo{
		Date:      time.Now().UTC().Format(time.RFC3339),
		Cores:     runtime.NumCPU(),
		GoVersion: runtime.Version(),
		DataDir:   dataDir,
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = strings.Join([]string{unix.ByteSliceToString(u.Sysname[:]), unix.ByteSliceToString(u.Release[:]),
			unix.ByteSliceToString(u.Version[:]), unix.ByteSliceToString(u.Machine[:])}, " ")
	}
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		m.MemoryGiB = int((uint64(si.Totalram)*uint64(si.Unit) + 1<<29) >> 30)
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	// The mount holding the data dir: the longest mount point prefixing it.
	abs, _ := filepath.EvalSymlinks(dataDir)
	if data, err := os.ReadFile("/proc/self/mounts"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) < 3 {
				continue
			}
			mp := f[1]
			if (abs == mp || strings.HasPrefix(abs, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(m.Mount) {
				m.Mount, m.Device, m.FileSystem = mp, f[0], f[2]
			}
		}
	}
	return m
}

// fsyncInfo is the machine's durable-write latency, measured in the run.
type fsyncInfo struct {
	Samples   int     `json:"samples"`
	MedianUs  float64 `json:"median_us"`
	P99Us     float64 `json:"p99_us"`
	Limit     float64 `json:"bbolt_commit_limit_per_s"` // 1 / (2 · median): a bbolt commit syncs twice
	Measured  string  `json:"measured"`                 // when (start/end of the run)
	MedianUs2 float64 `json:"median_end_us,omitempty"`
}

// measureFsync writes 4 KiB and fdatasyncs it n times in dir and returns
// the sorted latencies in nanoseconds.
func measureFsync(dir string, n int) ([]int64, error) {
	f, err := os.CreateTemp(dir, "fsync-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	for i := range buf {
		buf[i] = byte(i)
	}
	// Allocate the block once so every sample rewrites data, not metadata.
	if _, err := f.WriteAt(buf, 0); err != nil {
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	lat := make([]int64, 0, n)
	for i := 0; i < n+10; i++ {
		buf[0] = byte(i)
		start := time.Now()
		if _, err := f.WriteAt(buf, 0); err != nil {
			return nil, err
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			return nil, err
		}
		if i >= 10 { // warm-up
			lat = append(lat, time.Since(start).Nanoseconds())
		}
	}
	slices.Sort(lat)
	return lat, nil
}

func (m machineInfo) String() string {
	return fmt.Sprintf("%d cores (%s), %d GiB, %s, %s, data on %s (%s at %s)",
		m.Cores, m.CPU, m.MemoryGiB, m.Kernel, m.GoVersion, m.FileSystem, m.Device, m.Mount)
}

// loadAverage is the 1-, 5- and 15-minute load average (/proc/loadavg;
// zeros where there is none): every figure is reported with it, since the
// targets hold on a quiet machine (load below 1).
func loadAverage() [3]float64 {
	var l [3]float64
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		_, _ = fmt.Sscan(string(b), &l[0], &l[1], &l[2])
	}
	return l
}
