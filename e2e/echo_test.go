package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
)

// echo-server ACKs only with --acks (oslo.messaging's servers only with
// rpc_use_acks); --record has a line for each handler run as soon as the
// handler starts, so a kill -9 loses none; sleep replies after its ms.
func TestEchoServerAcksAndRecord(t *testing.T) {
	ours(t)
	e := testutil.Embedded(t)
	u := etcdURL(e)
	startProxy(t, proxyOpts{registry: []string{"-u", u}})
	record := filepath.Join(t.TempDir(), "acking.record")
	quiet := startEchoAt(t, u, "node-1", "quiet", "--acks=false")
	acking := startEchoAt(t, u, "node-1", "acking", "--record", record)

	if out, errOut, code := runCmd(t, "call", "demo.quiet", "echo", `{"seq": 1}`, "-u", u); code != 0 || !strings.Contains(out, `"server": "quiet"`) {
		t.Fatalf("call demo.quiet: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	out, errOut, code := runCmd(t, "call", "demo.acking", "sleep", `{"ms": 300, "seq": 2}`, "--acks", "-u", u)
	if code != 0 || strings.TrimSpace(out) != `{"ms": 300, "seq": 2, "server": "acking"}` {
		t.Fatalf("call demo.acking sleep: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// The line is in the file while the process runs, and after a kill -9.
	acking.kill()
	b, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if f := strings.Fields(lines[0]); len(lines) != 1 || len(f) != 5 || f[0] != "acking" || f[1] != "CALL" || f[2] != "sleep" || f[4] != "2" {
		t.Fatalf("record after kill -9: %q, want one line: acking CALL sleep <msg_id> 2", b)
	}

	// The ACKs each server sent, as it counts them when it stops: quiet
	// none, a server with --acks (startEchoAt's default) one for a cast.
	_ = quiet.cmd.Process.Signal(syscall.SIGTERM)
	<-quiet.done
	acked := startEchoAt(t, u, "node-1", "acked")
	if _, errOut, code := runCmd(t, "cast", "demo.acked", "echo", `{"seq": 3}`, "--acks", "-u", u); code != 0 {
		t.Fatalf("cast --acks to demo.acked: exit %d: %s", code, errOut)
	}
	_ = acked.cmd.Process.Signal(syscall.SIGTERM)
	<-acked.done
	for _, c := range []struct {
		s    *echoServer
		want string
	}{{quiet, "0"}, {acked, "1"}} {
		var kv map[string]string
		if err := c.s.log.follow(startTimeout, c.s.done, func(l string) bool {
			kv = parseLogLine(l)
			return kv["msg"] == "echo server stopped"
		}); err != nil {
			t.Fatalf("%s: no \"echo server stopped\" line: %v\n%s", c.s.name, err, c.s.log)
		}
		if kv["acks"] != c.want || kv["handled"] != "1" {
			t.Errorf("%s stopped with handled=%s acks=%s, want handled=1 acks=%s", c.s.name, kv["handled"], kv["acks"], c.want)
		}
	}
}
