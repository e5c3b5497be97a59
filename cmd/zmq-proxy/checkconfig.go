package main

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/zmq-proxy/zmq-proxy/internal/config"
)

// runCheckConfig is --check-config: the flags and the file are resolved and
// checked already (config.Resolve), and so is what only the proxy library checks
// (actors.Config.Validate), without binding a port or opening the
// registry. It prints one line and returns the exit code: 0 with
// "configuration OK" and a summary on stdout, 2 with the error on stderr.
func runCheckConfig(c *config.Config, stdout, stderr io.Writer) int {
	pc := c.ProxyConfig(slog.New(slog.DiscardHandler))
	if err := pc.Validate(); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", config.ProgName, err)
		return 2
	}
	fmt.Fprintf(stdout, "%s: configuration OK: %s\n", config.ProgName, c.Summary())
	return 0
}
