package main

import (
	"context"
	"fmt"
	"io"

	"github.com/zmq-proxy/zmq-proxy/internal/config"
	"github.com/zmq-proxy/zmq-proxy/internal/echo"
	"github.com/zmq-proxy/zmq-proxy/rpc"
)

// runEchoServer is "zmq-proxy echo-server TOPIC [SERVER]": it serves echo
// (its args plus the server's name), sleep (echo, after args.ms) and fail
// (a remote ValueError), prints every message it gets as one JSON line,
// and with --record appends a line per handler run to a file, until ctx
// ends. It ACKs CALLs and CASTs only with --acks, as oslo.messaging's
// servers do only with rpc_use_acks.
func runEchoServer(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	s, code := setupClient(ctx, config.CmdEcho, "echo-server", args, stdout, stderr, [2]int{1, 2}, nil)
	if s == nil {
		return code
	}
	defer s.done()
	topic, server := s.c.Args[0], ""
	if len(s.c.Args) == 2 {
		server = s.c.Args[1]
	}
	name := server
	if name == "" {
		name = s.c.Name
	}
	var rec *echo.Recorder
	if s.c.Record != "" {
		var err error
		if rec, err = echo.OpenRecorder(s.c.Record, name, s.log); err != nil {
			fmt.Fprintf(stderr, "%s echo-server: --record: %v\n", config.ProgName, err)
			return 2
		}
		defer rec.Close()
	}
	out := &echo.LineWriter{W: stdout}
	cfg := rpc.ServerConfig{Registry: s.reg, Host: s.c.Name, Topic: topic, Server: server, TargetTTL: s.c.TargetExpire,
		Logger: s.log, Handlers: echo.Handlers(name, rec), Observe: out.Message, Acks: s.c.Acks,
		Notify: func(context.Context, *rpc.Message) {}}
	cfg.Node = s.c.Node // the node whose local publisher proxy it subscribes on
	sctx, cancel := context.WithTimeout(ctx, s.c.RegistryWait())
	srv, err := rpc.NewServer(sctx, cfg)
	cancel()
	if err != nil {
		fmt.Fprintf(stderr, "%s echo-server: %v\n", config.ProgName, err)
		return 1
	}
	s.log.Info("echo server started", "topic", topic, "server", server, "identity", srv.Identity(), "acks", s.c.Acks, "record", s.c.Record)
	<-ctx.Done()
	srv.Close()
	s.log.Info("echo server stopped", "handled", srv.Stats().Handled.Load(), "duplicates", srv.Stats().Duplicates.Load(), "acks", srv.Stats().Acks.Load())
	return 0
}
