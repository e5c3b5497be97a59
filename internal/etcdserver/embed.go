//go:build !noembedetcd

package etcdserver

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// This file is the embedded etcd itself, go.etcd.io/etcd/server/v3/embed.
// A build with the tag noembedetcd leaves it out (noembed.go): etcd's
// server packages and their package initialisation are then not in the
// binary, which idles at about 6 MB less RSS (docs/memory.md); Local still
// uses an etcd that answers on its address.

// Server is a running embedded etcd member.
type Server struct {
	etcd       *embed.Etcd
	log        *slogCore
	clientAddr string // host:port actually bound
	peerAddr   string
	dataDir    string
	closeOnce  sync.Once
	// endStreams cancels the context of every client stream (watches,
	// lease keep-alives): etcd's own Close would wait up to its request
	// timeout (7 s) for streams that other processes hold open.
	endStreams context.CancelFunc
}

// start starts etcd on the given client and peer host:port.
func start(o Options, client, peer string) (*Server, error) {
	cfg := embed.NewConfig()
	cfg.Name = o.Name
	cfg.Dir = o.DataDir
	curl := url.URL{Scheme: "http", Host: client}
	purl := url.URL{Scheme: "http", Host: peer}
	cfg.ListenClientUrls = []url.URL{curl}
	cfg.AdvertiseClientUrls = []url.URL{curl}
	cfg.ListenPeerUrls = []url.URL{purl}
	cfg.AdvertisePeerUrls = []url.URL{purl}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.InitialClusterToken = o.Name
	cfg.LogLevel = "error"
	if o.BcryptCost > 0 {
		cfg.BcryptCost = uint(o.BcryptCost)
	}
	core := newSlogCore(o.Logger)
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.New(core))
	streams, endStreams := context.WithCancel(context.Background())
	cfg.GRPCAdditionalServerOptions = append(cfg.GRPCAdditionalServerOptions,
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			ctx, cancel := context.WithCancel(ss.Context())
			defer cancel()
			stop := context.AfterFunc(streams, cancel)
			defer stop()
			return handler(srv, &stream{ServerStream: ss, ctx: ctx})
		}))

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		endStreams()
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("embedded etcd on %s (peer %s): %w: %w", client, peer, ErrPortInUse, err)
		}
		return nil, fmt.Errorf("embedded etcd on %s (peer %s): %w", client, peer, err)
	}
	timer := time.NewTimer(o.ReadyTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		endStreams()
		e.Close()
		return nil, fmt.Errorf("embedded etcd on %s: %w", client, err)
	case <-timer.C:
		endStreams()
		e.Close()
		return nil, fmt.Errorf("embedded etcd on %s, after %s: %w", client, o.ReadyTimeout, ErrNotReady)
	}
	core.setServing(true)
	return &Server{etcd: e, log: core, clientAddr: client, peerAddr: peer, dataDir: o.DataDir, endStreams: endStreams}, nil
}

// BcryptCost returns the cost of the password hashes the running member
// makes.
func (s *Server) BcryptCost() int { return int(s.etcd.Server.Cfg.BcryptCost) }

// Err returns embed's error channel: an error of a listener or server
// goroutine after Start. It is closed by Close.
func (s *Server) Err() <-chan error { return s.etcd.Err() }

// Close stops the member and waits for it. It is safe to call twice; the
// second call does nothing. It always returns nil (embed's Close reports
// nothing); the result is there for io.Closer. The order:
//
//  1. turn etcd's own error logs down to debug level: every listener
//     goroutine logs an error as its listener closes;
//  2. end every client stream (watches, lease keep-alives) at once:
//     clients in other processes hold them open, and etcd would wait its
//     request timeout for them;
//  3. stop accepting client requests, letting those in flight finish
//     within the request timeout (embed from here on);
//  4. close the client listeners;
//  5. stop the raft server and the peer transport;
//  6. close the peer listeners' idle connections (at most 1 s);
//  7. wait for the serving goroutines and close the Err channel.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.log.setServing(false)
		s.endStreams()
		s.etcd.Close()
	})
	return nil
}

// stream is a server stream whose context ends when the server closes.
type stream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *stream) Context() context.Context { return s.ctx }
