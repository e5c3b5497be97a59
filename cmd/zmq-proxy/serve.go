package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/zmq-proxy/zmq-proxy/actors"
	"github.com/zmq-proxy/zmq-proxy/internal/config"
	"github.com/zmq-proxy/zmq-proxy/internal/logging"
)

// serve runs a started proxy until SIGINT or SIGTERM (sigs) or a fatal
// error. Meanwhile it reopens the log file and re-reads the CURVE
// allow-list and PLAIN users on each SIGHUP (hup) and keeps systemd
// informed (sdNotifier): READY=1 once p.Ready (at once when it has no
// registry: its sockets are bound when it is started), WATCHDOG=1 on the
// watchdog's interval, STOPPING=1 when it stops. SIGTERM drains the proxy first (drain); SIGINT does not.
// It returns the exit code: 0 after a signal (p is closed by then, the
// watchdog pinged meanwhile), 1 after a failure. The caller closes p.
func serve(p *actors.Proxy, c *config.Config, logger *slog.Logger, sigs, hup <-chan os.Signal, logs *logging.File) int {
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
	var registered <-chan struct{}
	if sd.enabled {
		select {
		case <-p.Ready():
			ready()
		default:
			sd.notify("STATUS=waiting for the registration in etcd")
			registered = p.Ready()
		}
	}
	// Memory that start-up or a burst used goes back to the kernel when it
	// is over (idlemem.go).
	idle := newIdleRelease()
	idleTicker := time.NewTicker(idleCheck)
	defer idleTicker.Stop()
	for {
		select {
		case <-idleTicker.C:
			idle.tick()
		case sig := <-sigs:
			logger.Info("shutting down", "signal", sig.String()+" signal received")
			sd.notify(daemon.SdNotifyStopping + "\nSTATUS=shutting down")
			if sig == syscall.SIGTERM && c.DrainTimeout > 0 {
				drain(p, c.DrainTimeout, logger, sigs, func() {
					select {
					case <-watchdog:
						sd.notify(daemon.SdNotifyWatchdog)
					default:
					}
				})
			}
			// Close too may take a while (deregistering, stopping the
			// actors): the watchdog's pings go on until it returns. The
			// caller's Close then returns at once with its result.
			closed := make(chan struct{})
			go func() { _ = p.Close(); close(closed) }()
			for {
				select {
				case <-closed:
					return 0
				case <-watchdog:
					sd.notify(daemon.SdNotifyWatchdog)
				}
			}
		case err := <-p.Err():
			logger.Error("proxy failed", "err", err)
			sd.notify(fmt.Sprintf("%s\nSTATUS=failed: %v", daemon.SdNotifyStopping, err))
			return 1
		case <-hup: // logrotate's postrotate, or new keys and users
			reopenLog(logger, logs)
			c.ReloadSecurity(logger)
		case <-watchdog:
			sd.notify(daemon.SdNotifyWatchdog)
		case <-registered:
			ready()
			registered = nil
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

// drain runs p.Drain after SIGTERM; a second SIGINT or SIGTERM (sigs)
// ends it at once. Meanwhile it calls tick every drainTick (the systemd
// watchdog's pings go on). It logs what the drain did.
func drain(p *actors.Proxy, timeout time.Duration, logger *slog.Logger, sigs <-chan os.Signal, tick func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(drainTick)
		defer t.Stop()
		for {
			select {
			case sig := <-sigs:
				logger.Info("second signal: stopping at once", "signal", sig.String()+" signal received")
				cancel()
				return
			case <-t.C:
				tick()
			case <-ctx.Done():
				return
			}
		}
	}()
	logger.Info("draining", "timeout", timeout)
	r := p.Drain(ctx, timeout)
	cancel()
	<-done
	logger.Info("drained", "reason", r.Reason, "deregistered", r.Deregistered,
		"peers_before", r.PeersBefore, "peers_after", r.PeersAfter, "peers_left", r.PeersBefore-r.PeersAfter,
		"routed", r.Routed, "took", r.Took.Round(time.Millisecond))
}

// drainTick is how often a drain looks for the watchdog's tick.
const drainTick = 100 * time.Millisecond
