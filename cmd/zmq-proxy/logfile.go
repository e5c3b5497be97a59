package main

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/zmq-proxy/zmq-proxy/internal/logging"
)

// newFileLogger returns the process's logger: slog text on stderr, or
// appended to the -l file; debug level with -d. logs is the -l file, nil
// when logging to stderr; the caller closes it when done logging.
func newFileLogger(c *config, stderr io.Writer) (logger *slog.Logger, logs *logging.File, err error) {
	level := slog.LevelInfo
	if c.Debug {
		level = slog.LevelDebug
	}
	w := stderr
	if c.LogFile != "" {
		if logs, err = logging.OpenFile(c.LogFile); err != nil {
			return nil, nil, fmt.Errorf("%s %s: %w", c.settings["log_file"].from, c.LogFile, err)
		}
		w = logs
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})), logs, nil
}

// reopenLog answers SIGHUP: the log file is reopened, and the reopening
// logged in the new file. Without -l there is nothing to reopen.
func reopenLog(logger *slog.Logger, logs *logging.File) {
	if logs == nil {
		logger.Info("SIGHUP: logging to stderr, no log file to reopen")
		return
	}
	if err := logs.Reopen(); err != nil {
		logger.Error("SIGHUP: log file not reopened, logging on in the old one", "path", logs.Path(), "err", err)
		return
	}
	logger.Info("log file reopened", "path", logs.Path())
}
