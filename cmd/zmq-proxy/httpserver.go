package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// httpEndpoint is one of the command's own HTTP servers (admin, pprof),
// each on a listener of its own. Close stops it and waits for it.
type httpEndpoint struct {
	srv *http.Server
	wg  sync.WaitGroup
}

// serveHTTP serves h on ln until Close; what is its name in the log.
func serveHTTP(ln net.Listener, h http.Handler, what string, logger *slog.Logger) *httpEndpoint {
	e := &httpEndpoint{srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		if err := e.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error(what+" server failed", "err", err)
		}
	}()
	return e
}

// Close stops the server, giving requests under way 2 s, and waits for it.
func (e *httpEndpoint) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := e.srv.Shutdown(ctx)
	e.wg.Wait()
	return err
}
