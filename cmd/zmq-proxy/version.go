package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/zmq-proxy/zmq-proxy/internal/config"
)

// versionLine is what --version prints: the module's version, the VCS
// revision the binary was built from, and the toolchain, all from the build
// information the Go linker stamps into the binary:
//
//	zmq-proxy v0.0.0-20261130103800-9e489f6a1b2c (revision 9e489f6a1b2c..., 2026-11-30T10:38:00Z) go1.26.8 linux/amd64
//
// A binary built with -buildvcs=false, or from a tree that is not a
// checkout, says "revision unknown"; a tree with uncommitted changes adds
// "modified".
func versionLine(bi *debug.BuildInfo) string {
	if bi == nil {
		return fmt.Sprintf("%s (no build information) %s %s/%s", config.ProgName, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	}
	version := bi.Main.Version
	if version == "" {
		version = "(devel)"
	}
	var rev, at string
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	vcs := []string{"revision unknown"}
	if rev != "" {
		vcs = []string{"revision " + rev}
		if at != "" {
			vcs = append(vcs, at)
		}
		if modified {
			vcs = append(vcs, "modified")
		}
	}
	goVersion := bi.GoVersion
	if goVersion == "" {
		goVersion = runtime.Version()
	}
	return fmt.Sprintf("%s %s (%s) %s %s/%s", config.ProgName, version, strings.Join(vcs, ", "), goVersion, runtime.GOOS, runtime.GOARCH)
}

// printVersion writes the version line of the running binary.
func printVersion(w io.Writer) {
	bi, _ := debug.ReadBuildInfo()
	fmt.Fprintln(w, versionLine(bi))
}
