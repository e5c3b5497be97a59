package main

import (
	"log/slog"
	"os"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// sdNotifier tells systemd, under Type=notify, how the proxy is doing:
// READY=1 once its sockets are bound and its record registered, STOPPING=1
// when it starts shutting down, WATCHDOG=1 at half of WatchdogSec. It does
// nothing when $NOTIFY_SOCKET is not set (not run by systemd).
type sdNotifier struct {
	log     *slog.Logger
	enabled bool
	// watchdog is the interval of WATCHDOG=1: half of $WATCHDOG_USEC when
	// it is set (and $WATCHDOG_PID, if set, is this process); 0 = none.
	watchdog time.Duration
	failed   bool // a notification failed already: the next ones log at debug
}

func newSdNotifier(log *slog.Logger) *sdNotifier {
	n := &sdNotifier{log: log, enabled: os.Getenv("NOTIFY_SOCKET") != ""}
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("systemd watchdog off: bad $WATCHDOG_USEC or $WATCHDOG_PID", "err", err)
	}
	if d > 0 {
		n.watchdog = d / 2
		log.Info("systemd watchdog on", "timeout", d, "interval", n.watchdog)
	}
	return n
}

// notify sends state (lines such as "READY=1" or "STATUS=...") to systemd.
// A failure is logged, at warning level the first time only.
func (n *sdNotifier) notify(state string) {
	if !n.enabled {
		return
	}
	_, err := daemon.SdNotify(false, state)
	switch {
	case err == nil:
		n.log.Debug("systemd notified", "state", state)
	case !n.failed:
		n.failed = true
		n.log.Warn("systemd notification failed", "socket", os.Getenv("NOTIFY_SOCKET"), "state", state, "err", err)
	default:
		n.log.Debug("systemd notification failed", "state", state, "err", err)
	}
}
