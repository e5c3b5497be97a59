package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/zmq-proxy/zmq-proxy/actors"
)

// runCheckConfig is --check-config: the flags and the file are resolved and
// checked already (resolve), and so is what only the proxy library checks
// (actors.Config.Validate), without binding a port or opening the
// registry. It prints one line and returns the exit code: 0 with
// "configuration OK" and a summary on stdout, 2 with the error on stderr.
func runCheckConfig(c *config, stdout, stderr io.Writer) int {
	pc := c.proxyConfig(slog.New(slog.DiscardHandler))
	if err := pc.Validate(); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", progName, err)
		return 2
	}
	fmt.Fprintf(stdout, "%s: configuration OK: %s\n", progName, c.summary())
	return 0
}

// summary is the resolved configuration in one line: the proxy kind, the
// ports it would bind ("0" for a random one), the registry and the
// metrics address.
func (c *config) summary() string {
	host := c.Host
	if host == "" {
		host = "*"
	}
	parts := []string{"kind=" + c.Kind.String(), "host=" + host}
	switch c.Kind {
	case actors.KindLocalPublisher:
		parts = append(parts, fmt.Sprintf("publisher_port=%d", c.PublisherPort))
		if len(c.SubscribeOn) > 0 {
			parts = append(parts, "subscribe_on="+strings.Join(c.SubscribeOn, ","))
		}
	case actors.KindSingleRouter:
		parts = append(parts, fmt.Sprintf("frontend_port=%d publisher_port=%d drain_timeout=%v", c.FrontendPort, c.PublisherPort, c.DrainTimeout))
	default:
		parts = append(parts, fmt.Sprintf("frontend_port=%d backend_port=%d publisher_port=%d drain_timeout=%v",
			c.FrontendPort, c.BackendPort, c.PublisherPort, c.DrainTimeout))
	}
	parts = append(parts, fmt.Sprintf("registry=%q", c.Registry.String()))
	if c.Registry.Mode == registryEmbedded {
		parts = append(parts, "etcd_addr="+c.EtcdAddr, "state_dir="+c.StateDir)
	}
	if c.MetricsAddr != "" {
		parts = append(parts, "metrics_addr="+c.MetricsAddr)
	}
	return strings.Join(parts, " ")
}
