package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/zmq-proxy/zmq-proxy/internal/config"
)

func TestVersionLine(t *testing.T) {
	platform := " " + runtime.GOOS + "/" + runtime.GOARCH
	tests := []struct {
		name string
		bi   *debug.BuildInfo
		want string
	}{
		{
			name: "checkout",
			bi: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261130103800-9e489f6a1b2c"},
				Settings: []debug.BuildSetting{
					{Key: "vcs", Value: "git"},
					{Key: "vcs.revision", Value: "9e489f6a1b2c3d4e5f60718293a4b5c6d7e8f901"},
					{Key: "vcs.time", Value: "2026-11-30T10:38:00Z"},
					{Key: "vcs.modified", Value: "false"},
				}},
			want: "zmq-proxy v0.0.0-20261130103800-9e489f6a1b2c (revision 9e489f6a1b2c3d4e5f60718293a4b5c6d7e8f901, 2026-11-30T10:38:00Z) go1.26.8" + platform,
		},
		{
			name: "modified checkout",
			bi: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3+dirty"},
				Settings: []debug.BuildSetting{
					{Key: "vcs.revision", Value: "abc"},
					{Key: "vcs.modified", Value: "true"},
				}},
			want: "zmq-proxy v1.2.3+dirty (revision abc, modified) go1.26.8" + platform,
		},
		{
			name: "no VCS",
			bi:   &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			want: "zmq-proxy (devel) (revision unknown) go1.26.8" + platform,
		},
		{
			name: "empty",
			bi:   &debug.BuildInfo{},
			want: "zmq-proxy (devel) (revision unknown) " + runtime.Version() + platform,
		},
		{
			name: "no build information",
			want: "zmq-proxy (no build information) " + runtime.Version() + platform,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := versionLine(tt.bi); got != tt.want {
				t.Errorf("got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// --version answers before anything else is looked at, as -h does: a bad
// value elsewhere on the line does not matter.
func TestResolveVersion(t *testing.T) {
	for _, args := range [][]string{
		{"--version"},
		{"-version"},
		{"--version=true"},
		{"-f", "abc", "--version"},
		{"--version", "--state-dir", ""},
	} {
		if _, err := config.ResolveProxy(args); !errors.Is(err, config.ErrVersion) {
			t.Errorf("%q: got error %v, want config.ErrVersion", args, err)
		}
	}
	if _, err := config.ResolveProxy([]string{"--version=false", "-u", "zmq://"}); err != nil {
		t.Errorf("--version=false: got error %v, want none", err)
	}
}

// TestVersionStamped builds the binary from a git checkout of this
// package's module and checks that --version prints the commit it was built
// from. The checkout is a fresh repository holding a copy of the working
// tree, so what is built is the code under test; a git worktree would not
// do, as the go command stamps no VCS information in one (its .git is a
// file).
func TestVersionStamped(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command:", err)
	}
	gitTool, err := exec.LookPath("git")
	if err != nil {
		t.Skip("no git command:", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	root := moduleRoot(t)
	dir := t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, gitTool, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
			"GIT_AUTHOR_NAME=test", "GIT_AUTHOR_EMAIL=test@example.org",
			"GIT_COMMITTER_NAME=test", "GIT_COMMITTER_EMAIL=test@example.org")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("git %q: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") { // not .git: a repository of its own is made below
			copyTree(t, filepath.Join(root, e.Name()), filepath.Join(dir, e.Name()))
		}
	}
	git("init", "-q")
	git("add", "-A")
	git("commit", "-q", "-m", "version test")
	rev := git("rev-parse", "HEAD")

	bin := filepath.Join(t.TempDir(), "zmq-proxy")
	build := exec.CommandContext(ctx, goTool, "build", "-buildvcs=true", "-o", bin, "./cmd/zmq-proxy")
	build.Dir = dir
	// The environment may turn stamping off (GOFLAGS=-buildvcs=false).
	build.Env = append(os.Environ(), "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "--version")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("zmq-proxy --version: %v (stderr %q)", err, stderr.String())
	}
	want := regexp.MustCompile(`^zmq-proxy v0\.0\.0-\d{14}-` + rev[:12] + ` \(revision ` + rev +
		`, \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\) go\S+ ` + runtime.GOOS + "/" + runtime.GOARCH + "\n$")
	if got := stdout.String(); !want.MatchString(got) {
		t.Errorf("zmq-proxy --version: got %q, want it to match %s", got, want)
	}
	t.Logf("built from commit %s: %s", rev[:12], strings.TrimSpace(stdout.String()))
	if stderr.Len() > 0 {
		t.Errorf("zmq-proxy --version: stderr %q, want none", stderr.String())
	}
}

// moduleRoot is the directory of go.mod, two levels above this package.
func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root: %v", err)
	}
	return root
}

// copyTree copies the regular files under src to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(to)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}
