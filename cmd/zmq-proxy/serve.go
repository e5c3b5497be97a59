package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/zmq-proxy/zmq-proxy/actors"
)

// serve runs a started proxy until SIGINT or SIGTERM (ctx) or a fatal
// error. Meanwhile it reopens the log file on each SIGHUP and keeps
// systemd informed (sdNotifier): READY=1 as soon as the proxy's record is
// in the registry (at once when it has no registry: its sockets are bound
// when it is started), WATCHDOG=1 on the watchdog's interval, STOPPING=1
// when it returns. It returns the exit code: 0 after a signal, 1 after a
// failure. The caller closes p.
func serve(ctx context.Context, p *actors.Proxy, registers bool, logger *slog.Logger, logs *logFile, hup <-chan os.Signal) int {
	sd := newSdNotifier(logger)
	var watchdog <-chan time.Time
	if sd.watchdog > 0 {
		t := time.NewTicker(sd.watchdog)
		defer t.Stop()
		watchdog = t.C
	}
	ready := func() {
		a := p.Addrs()
		sd.notify(fmt.Sprintf("%s\nSTATUS=routing: frontend %s, backend %s, publisher %s",
			daemon.SdNotifyReady, orDash(a.Frontend), orDash(a.Backend), orDash(a.Publisher)))
	}
	var poll <-chan time.Time
	switch {
	case !sd.enabled:
	case !registers:
		ready()
	default:
		sd.notify("STATUS=waiting for the registration in etcd")
		t := time.NewTicker(readyPoll)
		defer t.Stop()
		poll = t.C
	}
	for {
		select {
		case <-ctx.Done():
			logger.Info("shutting down", "signal", context.Cause(ctx))
			sd.notify(daemon.SdNotifyStopping + "\nSTATUS=shutting down")
			return 0
		case err := <-p.Err():
			logger.Error("proxy failed", "err", err)
			sd.notify(fmt.Sprintf("%s\nSTATUS=failed: %v", daemon.SdNotifyStopping, err))
			return 1
		case <-hup:
			reopenLog(logger, logs)
		case <-watchdog:
			sd.notify(daemon.SdNotifyWatchdog)
		case <-poll:
			if p.Registered() {
				ready()
				poll = nil
			}
		}
	}
}

// orDash is s, or "-" when s is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
