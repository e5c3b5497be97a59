// Command zmq-proxy runs one proxy of the ZeroMQ messaging driver: a central
// double- or single-router proxy, or a node-local publisher. "zmq-proxy
// list" prints the proxies and servers registered in etcd; call, cast,
// fanout, notify, echo-server and bench use the rpc package for people.
// Run any of them with -h for its flags and configuration file.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"
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

// run is the whole process: a subcommand, or the proxy (runProxy). It
// returns the exit code: 0 after SIGINT or SIGTERM (or -h), 1 on a
// runtime error, 2 on a bad flag or configuration.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		if sub := subcommands[args[0]]; sub != nil {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return sub(ctx, args[0], args[1:], stdout, stderr)
		}
	}
	return runProxy(args, stdout, stderr)
}
