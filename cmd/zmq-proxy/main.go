// Command zmq-proxy runs one proxy of the ZeroMQ messaging driver: a central
// double- or single-router proxy, or a node-local publisher. "zmq-proxy
// list" prints the proxies and servers registered in etcd; call, cast,
// fanout, notify, echo-server and bench use the rpc package for people.
// Run any of them with -h for its flags and configuration file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/zmq-proxy/zmq-proxy/actors"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// subcommands are the commands other than the proxy itself.
var subcommands = map[string]func(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int{
	"list": func(ctx context.Context, _ string, args []string, stdout, stderr io.Writer) int {
		return runList(ctx, args, stdout, stderr)
	},
	"call":   runSend,
	"cast":   runSend,
	"fanout": runSend,
	"notify": runSend,
	"echo-server": func(ctx context.Context, _ string, args []string, stdout, stderr io.Writer) int {
		return runEchoServer(ctx, args, stdout, stderr)
	},
	"bench": runBench,
	"ctl": func(_ context.Context, _ string, args []string, stdout, stderr io.Writer) int {
		return runCtl(args, stdout, stderr)
	},
	"keygen": func(_ context.Context, _ string, args []string, stdout, stderr io.Writer) int {
		return runKeygen(args, stdout, stderr)
	},
}

// run is the whole process. It returns the exit code: 0 after SIGINT or
// SIGTERM (or -h), 1 on a runtime error, 2 on a bad flag or configuration.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		if sub := subcommands[args[0]]; sub != nil {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return sub(ctx, args[0], args[1:], stdout, stderr)
		}
	}
	c, err := resolveConfig(args)
	if errors.Is(err, flag.ErrHelp) {
		printUsage(stdout, cmdProxy)
		return 0
	}
	if errors.Is(err, errVersion) {
		printVersion(stdout)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", progName, err)
		return 2
	}
	if c.CheckConfig {
		return runCheckConfig(c, stdout, stderr)
	}
	logger, logs, err := newFileLogger(c, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", progName, err)
		return 2
	}
	if logs != nil {
		defer logs.Close() //nolint:errcheck // nothing is left to report it to
	}
	c.log(logger)
	c.logSecurity(logger)
	if c.Threads > 0 {
		runtime.GOMAXPROCS(c.Threads)
	}

	// Catch signals before New logs "proxy started": one sent on seeing that
	// line must shut the proxy down, not kill it. SIGHUP (logrotate's
	// postrotate) reopens the log file, and must not kill it either.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	hup := make(chan os.Signal, 1)
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
	code := serve(p, c, logger, sigs, hup, logs)
	if err := p.Close(); err != nil {
		logger.Error("proxy close failed", "err", err)
		code = 1
	}
	return code
}
