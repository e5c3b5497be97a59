package main

import (
	"log/slog"

	"github.com/zmq-proxy/zmq-proxy/internal/logging"
)

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
