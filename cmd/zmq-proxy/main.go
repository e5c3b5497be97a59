// Command zmq-proxy runs one proxy of the ZeroMQ messaging driver: a central
// double- or single-router proxy, or a node-local publisher. "zmq-proxy
// list" prints the proxies registered in etcd. Run either with -h for its
// flags and configuration file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/zmq-proxy/zmq-proxy/actors"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole process. It returns the exit code: 0 after SIGINT or
// SIGTERM (or -h), 1 on a runtime error, 2 on a bad flag or configuration.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "keygen" {
		return runKeygen(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "list" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return runList(ctx, args[1:], stdout, stderr)
	}
	c, err := resolveConfig(args)
	if errors.Is(err, flag.ErrHelp) {
		printUsage(stdout, cmdProxy)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", progName, err)
		return 2
	}
	logger, closeLog, err := newLogger(c, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", progName, err)
		return 2
	}
	defer closeLog() //nolint:errcheck // nothing is left to report it to
	c.log(logger)
	c.logSecurity(logger)

	// Catch signals before New logs "proxy started": one sent on seeing that
	// line must shut the proxy down, not kill it.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1) // SIGHUP re-reads the allow-list or user file
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	p, err := actors.New(c.proxyConfig(logger))
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", progName, err)
		if errors.Is(err, actors.ErrConfig) {
			return 2
		}
		return 1
	}
	code := 0
wait:
	for {
		select {
		case <-hup:
			c.reloadSecurity(logger)
		case <-ctx.Done():
			logger.Info("shutting down", "signal", context.Cause(ctx))
			break wait
		case err := <-p.Err():
			logger.Error("proxy failed", "err", err)
			code = 1
			break wait
		}
	}
	if err := p.Close(); err != nil {
		logger.Error("proxy close failed", "err", err)
		code = 1
	}
	return code
}
