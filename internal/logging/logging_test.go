package logging

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// MinLevel drops what is below its level, also through With and
// WithGroup.
func TestMinLevel(t *testing.T) {
	var buf bytes.Buffer
	base := slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})
	log := slog.New(MinLevel{base, slog.LevelWarn}).With("a", 1).WithGroup("g")
	log.Info("dropped")
	log.Warn("kept")
	if n := bytes.Count(buf.Bytes(), []byte("\n")); n != 1 || !bytes.Contains(buf.Bytes(), []byte("msg=kept a=1")) {
		t.Errorf("got %d lines %q, want the warning only, with its attribute", n, buf.String())
	}
	if (MinLevel{base, slog.LevelWarn}).Enabled(context.Background(), slog.LevelInfo) {
		t.Error("Enabled(info) under a warn MinLevel: true")
	}
}

// A renamed log file is written anew at its path after Reopen; the lines
// before it stay in the renamed one.
func TestFileReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "proxy.log")
	f, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("one\n")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := f.Reopen(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("two\n")); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{path + ".1": "one\n", path: "two\n"} {
		if b, err := os.ReadFile(p); err != nil || string(b) != want {
			t.Errorf("%s: %q %v, want %q", p, b, err, want)
		}
	}
}
