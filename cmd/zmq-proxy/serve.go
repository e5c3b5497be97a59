package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/zmq-proxy/zmq-proxy/actors"
)

// serve runs a started proxy until SIGINT or SIGTERM (ctx) or a fatal
// error, reopening the log file on each SIGHUP meanwhile. It returns the
// exit code: 0 after a signal, 1 after a failure. The caller closes p.
func serve(ctx context.Context, p *actors.Proxy, logger *slog.Logger, logs *logFile, hup <-chan os.Signal) int {
	for {
		select {
		case <-ctx.Done():
			logger.Info("shutting down", "signal", context.Cause(ctx))
			return 0
		case err := <-p.Err():
			logger.Error("proxy failed", "err", err)
			return 1
		case <-hup:
			reopenLog(logger, logs)
		}
	}
}
