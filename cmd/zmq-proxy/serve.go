package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/zmq-proxy/zmq-proxy/actors"
)

// serve runs a started proxy until SIGINT or SIGTERM (sigs) or a fatal
// error. Meanwhile it reopens the log file and re-reads the CURVE allow-list and PLAIN users on each SIGHUP (hup) and keeps
// systemd informed (sdNotifier): READY=1 as soon as the proxy's record is
// in the registry (at once when it has no registry: its sockets are bound
// when it is started), WATCHDOG=1 on the watchdog's interval, STOPPING=1
// when it stops. SIGTERM drains the proxy first (drain); SIGINT does not.
// It returns the exit code: 0 after a signal (p is closed by then, the
// watchdog pinged meanwhile), 1 after a failure. The caller closes p.
func serve(p *actors.Proxy, c *config, logger *slog.Logger, sigs, hup <-chan os.Signal, logs *logFile) int {
	registers := c.Registry.Mode != registryNone
	if c.AdminAddr != "" {
		admin, err := startAdmin(c.AdminAddr, c.adminToken, p, c.Kind, logger)
		if err != nil {
			logger.Error("admin endpoint not started", "err", err)
			return 1
		}
		defer admin.Close() //nolint:errcheck // the proxy is going anyway
	}
	if c.PprofAddr != "" {
		pp, err := startPprof(c.PprofAddr, logger)
		if err != nil {
			logger.Error("pprof endpoint not started", "err", err)
			return 1
		}
		defer pp.Close() //nolint:errcheck // the proxy is going anyway
	}
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
			c.reloadSecurity(logger)
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

// parseDrainTimeout parses --drain-timeout: a duration or a number of
// seconds, 0 for none.
func parseDrainTimeout(s string) (time.Duration, error) {
	if s == "0" {
		return 0, nil
	}
	d, err := parseTimeout(s)
	if err != nil {
		return 0, errors.New("not a duration (5s, 1m, a number of seconds, or 0 for no drain)")
	}
	return d, nil
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
