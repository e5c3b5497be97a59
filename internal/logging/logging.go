// Package logging holds the slog pieces the proxy and its command share:
// a handler that drops records below a level (MinLevel), and the -l log
// file that logrotate may rename under a running process (File).
package logging

import (
	"context"
	"log/slog"
	"os"
	"sync"
)

// MinLevel filters a handler to records at or above Level (protoactor
// logs its own lifecycle at info, bench's rpc clients log their retries:
// only their warnings are wanted).
type MinLevel struct {
	slog.Handler
	Level slog.Level
}

// Enabled reports whether l is at or above the level and the wrapped
// handler takes it.
func (h MinLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.Level && h.Handler.Enabled(ctx, l)
}

// WithAttrs keeps the level.
func (h MinLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return MinLevel{h.Handler.WithAttrs(a), h.Level}
}

// WithGroup keeps the level.
func (h MinLevel) WithGroup(n string) slog.Handler { return MinLevel{h.Handler.WithGroup(n), h.Level} }

// File is the -l log file: appended to, and reopened by name on SIGHUP,
// so that logrotate can rename it and have the proxy write a new one at
// the same path (no copytruncate, which loses the lines written between
// its copy and its truncate). Write and Reopen may be called from any
// goroutine; a log record is one Write, so it lands whole in one file.
type File struct {
	path string

	mu sync.Mutex
	f  *os.File
}

// OpenFile opens path for appending, creating it if need be.
func OpenFile(path string) (*File, error) {
	f, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	return &File{path: path, f: f}, nil
}

func openAppend(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
}

// Path is the file's path, as opened.
func (l *File) Path() string { return l.path }

func (l *File) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Write(p)
}

// Reopen opens the file at the path again (a new file if the old one was
// renamed or removed) and closes the one written so far. If the path
// cannot be opened, logging goes on in the old file and the error is
// returned.
func (l *File) Reopen() error {
	f, err := openAppend(l.path)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	return old.Close()
}

// Close closes the file.
func (l *File) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}
