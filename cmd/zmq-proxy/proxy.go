package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/zmq-proxy/zmq-proxy/actors"
	"github.com/zmq-proxy/zmq-proxy/internal/config"
	"github.com/zmq-proxy/zmq-proxy/internal/logging"
)

// runProxy is the proxy command, "zmq-proxy [options]": it parses the
// configuration, builds the proxy (actors.New), serves it (serve) and
// closes it. It returns the exit code.
func runProxy(args []string, stdout, stderr io.Writer) int {
	c, err := config.ResolveProxy(args)
	if errors.Is(err, flag.ErrHelp) {
		config.PrintUsage(stdout, config.CmdProxy)
		return 0
	}
	if errors.Is(err, config.ErrVersion) {
		printVersion(stdout)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", config.ProgName, err)
		return 2
	}
	if c.CheckConfig {
		return runCheckConfig(c, stdout, stderr)
	}
	logger, logs, err := config.NewFileLogger(c, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", config.ProgName, err)
		return 2
	}
	if logs != nil {
		defer logs.Close() //nolint:errcheck // nothing is left to report it to
	}
	c.Log(logger)
	c.LogSecurity(logger)
	if c.Threads > 0 {
		runtime.GOMAXPROCS(c.Threads)
	}
	return startAndServe(c, logger, logs, stderr)
}

// startAndServe builds the proxy from c, serves it until a signal or a
// failure, and closes it; it returns the exit code.
func startAndServe(c *config.Config, logger *slog.Logger, logs *logging.File, stderr io.Writer) int {
	// Catch signals before New logs "proxy started": one sent on seeing that
	// line must shut the proxy down, not kill it. SIGHUP (logrotate's
	// postrotate) reopens the log file, and must not kill it either.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	p, err := actors.New(c.ProxyConfig(logger))
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", config.ProgName, err)
		if errors.Is(err, actors.ErrConfig) {
			return 2
		}
		return 1
	}
	code := serve(p, c, logger, sigs, hup, logs)
	if err := p.Close(); err != nil {
		logger.Error("proxy close failed", "err", err)
		code = 1
	}
	return code
}
