package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/zmq-proxy/zmq-proxy/internal/config"
)

// --record and the methods are echo-server's: the other client commands
// refuse the flag; its help says what it does.
func TestEchoRecordFlag(t *testing.T) {
	hermeticEnv(t)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"call", "demo", "echo", "--record", "x"}, &stdout, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), "flag provided but not defined: -record") {
		t.Fatalf("call --record: exit %d, stderr %q; want 2 and the flag refused", code, stderr.String())
	}
	stdout.Reset()
	if code := run([]string{"echo-server", "-h"}, &stdout, &stderr); code != 0 ||
		!strings.Contains(stdout.String(), "--record FILE") || !strings.Contains(stdout.String(), "sleep") {
		t.Fatalf("echo-server -h: exit %d, stdout %q; want --record FILE and sleep", code, stdout.String())
	}
	c, err := config.Resolve(config.CmdEcho, []string{"demo", "--record", "/tmp/r.log", "--acks"})
	if err != nil || c.Record != "/tmp/r.log" || !c.Acks {
		t.Fatalf("resolve echo-server --record --acks: got %+v, %v", c, err)
	}
}
