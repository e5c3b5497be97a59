package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/zmq-proxy/zmq-proxy/zmqproxytest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// The README's service program is this file, byte for byte: it compiles
// (go vet and go build of ./... build it), and it works.
func TestREADMESnippetIsThisProgram(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	program, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Use it from a service\n")
	if !ok {
		t.Fatal(`README.md has no section "## Use it from a service"`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	_, block, ok := strings.Cut(section, "\n```go\n")
	if !ok {
		t.Fatal("README.md's service section has no ```go block")
	}
	block, _, ok = strings.Cut(block, "\n```\n")
	if !ok {
		t.Fatal("README.md's ```go block does not end")
	}
	if block+"\n" != string(program) {
		t.Errorf("README.md's service program differs from examples/service/main.go:\n--- README\n%s\n--- main.go\n%s", block, program)
	}
}

// The program calls through a proxy and prints the sum.
func TestRun(t *testing.T) {
	sys := zmqproxytest.Start(t)
	var out bytes.Buffer
	if err := run(&out, strings.TrimPrefix(sys.Endpoints()[0], "http://")); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "2 + 3 = 5\n" {
		t.Errorf("output %q, want %q", got, "2 + 3 = 5\n")
	}
}

// Without etcd it fails, within the registry client's bound, naming the
// endpoint.
func TestRunNoEtcd(t *testing.T) {
	err := run(&bytes.Buffer{}, "127.0.0.1:1")
	if err == nil || !strings.Contains(err.Error(), "no answer from etcd at 127.0.0.1:1 within 5s") {
		t.Errorf("run without etcd: %v, want the endpoint named", err)
	}
}
