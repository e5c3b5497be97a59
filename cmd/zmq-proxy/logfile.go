package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
)

// logFile is the -l log file: appended to, and reopened by name on SIGHUP,
// so that logrotate can rename it and have the proxy write a new one at
// the same path (no copytruncate, which loses the lines written between
// its copy and its truncate). Write and Reopen may be called from any
// goroutine; a log record is one Write, so it lands whole in one file.
type logFile struct {
	path string

	mu sync.Mutex
	f  *os.File
}

// openLogFile opens path for appending, creating it if need be.
func openLogFile(path string) (*logFile, error) {
	f, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	return &logFile{path: path, f: f}, nil
}

func openAppend(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
}

func (l *logFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Write(p)
}

// Reopen opens the file at the path again (a new file if the old one was
// renamed or removed) and closes the one written so far. If the path
// cannot be opened, logging goes on in the old file and the error is
// returned.
func (l *logFile) Reopen() error {
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
func (l *logFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}

// newFileLogger returns the process's logger: slog text on stderr, or
// appended to the -l file; debug level with -d. logs is the -l file, nil
// when logging to stderr; the caller closes it when done logging.
func newFileLogger(c *config, stderr io.Writer) (logger *slog.Logger, logs *logFile, err error) {
	level := slog.LevelInfo
	if c.Debug {
		level = slog.LevelDebug
	}
	w := stderr
	if c.LogFile != "" {
		if logs, err = openLogFile(c.LogFile); err != nil {
			return nil, nil, fmt.Errorf("%s %s: %w", c.settings["log_file"].from, c.LogFile, err)
		}
		w = logs
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})), logs, nil
}

// reopenLog answers SIGHUP: the log file is reopened, and the reopening
// logged in the new file. Without -l there is nothing to reopen.
func reopenLog(logger *slog.Logger, logs *logFile) {
	if logs == nil {
		logger.Info("SIGHUP: logging to stderr, no log file to reopen")
		return
	}
	if err := logs.Reopen(); err != nil {
		logger.Error("SIGHUP: log file not reopened, logging on in the old one", "path", logs.path, "err", err)
		return
	}
	logger.Info("log file reopened", "path", logs.path)
}
