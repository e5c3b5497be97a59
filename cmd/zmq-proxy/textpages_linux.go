package main

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// processCPU returns the CPU time, user and system, the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// releaseTextPages unmaps the clean pages of this program's own read-only
// mappings (code, read-only data, the function tables) from the process,
// and returns how many bytes of mappings it advised.
//
// Starting a proxy touches code and tables it will not touch again
// (package initialisation, flag parsing, the first connection to the
// registry), and the kernel maps the neighbours of every page touched
// ("fault-around"): an idle proxy kept 19-25 MB of its executable mapped
// of which it used 4-5 MB. Those are page-cache pages, shared by every
// process of the binary and kept by the kernel after this call; the
// process maps back, from the page cache, what it touches afterwards.
// VmRSS then shows what the idle proxy uses, and the kernel need not
// unmap the pages to reclaim them.
//
// Only mappings of the executable with no write permission and no
// anonymous (copied-on-write) page are advised: MADV_DONTNEED drops a
// private mapping's own copies, and this must never lose data.
func releaseTextPages() int64 {
	exe, err := os.Executable()
	if err != nil {
		return 0
	}
	smaps, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0
	}
	defer smaps.Close()
	type mapping struct{ start, end uintptr }
	var cur *mapping
	var clean []mapping
	sc := bufio.NewScanner(smaps)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			// A mapping's header: start-end perms offset dev inode [path].
			cur = nil
			if len(f) < 6 || f[5] != exe || strings.Contains(f[1], "w") {
				continue
			}
			se := strings.SplitN(f[0], "-", 2)
			start, err1 := strconv.ParseUint(se[0], 16, 64)
			end, err2 := strconv.ParseUint(se[1], 16, 64)
			if err1 != nil || err2 != nil {
				continue
			}
			cur = &mapping{uintptr(start), uintptr(end)}
		case cur != nil && len(f) == 3 && f[0] == "Anonymous:":
			if f[1] == "0" {
				clean = append(clean, *cur)
			}
			cur = nil
		}
	}
	var advised int64
	for _, m := range clean {
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, m.start, m.end-m.start, syscall.MADV_DONTNEED); errno == 0 {
			advised += int64(m.end - m.start)
		}
	}
	return advised
}
