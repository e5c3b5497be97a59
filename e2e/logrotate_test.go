package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
)

// startLoggingProxy starts our proxy with -d and -l logPath (plus args),
// and waits until it has written "proxy started" in that file.
func startLoggingProxy(t *testing.T, logPath string, args ...string) *proxy {
	t.Helper()
	ours(t)
	args = append([]string{"-H", "127.0.0.1", "-u", "zmq://", "-d", "-l", logPath}, args...)
	p := &proxy{log: newLineBuffer()}
	p.process = startProcess(t, exec.Command(binPath, args...), p.log, p.log)
	t.Cleanup(func() { p.cleanup(t) })
	var kv map[string]string
	testutil.CheckFor(t, startTimeout, func() error {
		if p.exited() {
			p.stopped = true
			t.Fatalf("proxy exited before it started: %v\noutput:\n%s", p.waitErr, p.log)
		}
		for _, l := range readLines(t, logPath) {
			if kv = parseLogLine(l); kv["msg"] == "proxy started" {
				return nil
			}
		}
		return fmt.Errorf("no \"proxy started\" line in %s", logPath)
	})
	p.frontend, p.backend, p.publisher = kv["frontend"], kv["backend"], kv["publisher"]
	return p
}

// readLines is the lines of a file, none if it does not exist.
func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// hasLogLine reports whether one of lines is a log line with msg=<msg>.
func hasLogLine(lines []string, msg string) bool {
	for _, l := range lines {
		if parseLogLine(l)["msg"] == msg {
			return true
		}
	}
	return false
}

// waitLogFileLine waits until the log file at path has a record whose
// msg is msg.
func waitLogFileLine(t *testing.T, path, msg string) {
	t.Helper()
	testutil.CheckFor(t, metricWait, func() error {
		if !hasLogLine(readLines(t, path), msg) {
			return fmt.Errorf("no %q line in %s", msg, path)
		}
		return nil
	})
}

// startLoggedCasts starts cast_stream.py (a cast every 2ms) through p and
// returns it once 100 casts have arrived, with the count it saw.
func startLoggedCasts(t *testing.T, p *proxy) (s *peer, n int) {
	t.Helper()
	s = startPeer(t, "cast_stream.py", append(p.peerArgs(), "--interval", "0.002")...)
	s.awaitStep(t, "warm", nil)
	s.proceed(t)
	return s, s.waitReceived(t, 100)
}

// stopLoggedCasts stops s, checks that every cast it sent arrived, stops
// p with SIGTERM (exit 0 in time) and returns how many casts were sent.
func stopLoggedCasts(t *testing.T, s *peer, p *proxy) (sent int) {
	t.Helper()
	s.send(t, "stop")
	res := s.result(t)
	if res["received"] != res["sent"] {
		t.Fatalf("casts: %v sent, %v received, want all received", res["sent"], res["received"])
	}
	took, inTime := p.signal(t, syscall.SIGTERM)
	p.checkExit0(t, syscall.SIGTERM, took, inTime)
	return int(res["sent"].(float64))
}

// isCastLine reports whether a parsed log line is the frontend's record
// of a cast from cast_stream.py (message id c-<i>).
func isCastLine(kv map[string]string) bool {
	return kv["msg"] == "message" && kv["socket"] == "frontend" && strings.HasPrefix(kv["message_id"], "c-")
}

// What logrotate does without copytruncate: the log file is renamed, then
// the proxy gets SIGHUP and opens a new one at the old path. Casts flow
// all along, each logged once (-d): every one of them is in exactly one of
// the two files, and every line is whole.
func TestSIGHUPReopensLogFile(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "zmq-proxy.log")
	rotated := logPath + ".1"
	p := startLoggingProxy(t, logPath)
	s, n := startLoggedCasts(t, p)

	if err := os.Rename(logPath, rotated); err != nil {
		t.Fatal(err)
	}
	n = s.waitReceived(t, n+100) // these are logged in the renamed file
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLogFileLine(t, logPath, "log file reopened")
	testutil.CheckFor(t, metricWait, func() error { // and these in the new one
		n := 0
		for _, l := range readLines(t, logPath) {
			if kv := parseLogLine(l); isCastLine(kv) {
				n++
			}
		}
		if n < 100 {
			return fmt.Errorf("%d casts logged in the new file, want 100", n)
		}
		return nil
	})
	sent := stopLoggedCasts(t, s, p)

	// Each cast c-<i> is logged once by the frontend, in one of the files.
	seen := make(map[string]int)
	perFile := make(map[string]int)
	for _, path := range []string{rotated, logPath} {
		for _, l := range readLines(t, path) {
			kv := parseLogLine(l)
			if kv["time"] == "" || kv["level"] == "" || kv["msg"] == "" {
				t.Errorf("%s: a line that is not a whole log record: %q", filepath.Base(path), l)
			}
			if isCastLine(kv) {
				seen[kv["message_id"]]++
				perFile[path]++
			}
		}
	}
	for i := range sent {
		id := fmt.Sprintf("c-%d", i)
		if seen[id] != 1 {
			t.Errorf("cast %s logged %d times in the two files, want once", id, seen[id])
		}
		delete(seen, id)
	}
	if len(seen) > 0 {
		t.Errorf("casts logged that were not sent: %v", seen)
	}
	t.Logf("%d casts: %d logged in the renamed file, %d in the new one", sent, perFile[rotated], perFile[logPath])
	if perFile[rotated] < 200 || perFile[logPath] < 100 {
		t.Errorf("casts logged: %d in the renamed file, %d in the new one; want at least 200 and 100",
			perFile[rotated], perFile[logPath])
	}
	if old := readLines(t, rotated); hasLogLine(old, "log file reopened") || hasLogLine(old, "shutting down") {
		t.Errorf("the renamed file has lines written after the reopening:\n%s", strings.Join(old, "\n"))
	}
	if !hasLogLine(readLines(t, logPath), "shutting down") {
		t.Errorf("no \"shutting down\" line in the new file")
	}
}

// A log file that cannot be reopened (a directory now stands at its
// path): the proxy says so in the old file and goes on logging there; a
// later SIGHUP, once the path is usable again, opens a new file.
func TestSIGHUPReopenFails(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "zmq-proxy.log")
	rotated := logPath + ".1"
	p := startLoggingProxy(t, logPath)
	if err := os.Rename(logPath, rotated); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(logPath, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLogFileLine(t, rotated, "SIGHUP: log file not reopened, logging on in the old one")
	runPeer(t, "call_reply.py", p.peerArgs()...) // the proxy routes on, and logs it in the old file
	if !hasLogLine(readLines(t, rotated), "message") {
		t.Errorf("no message logged in the old file after the failed reopening")
	}

	if err := os.Remove(logPath); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLogFileLine(t, logPath, "log file reopened")
	if p.exited() {
		t.Fatalf("proxy exited: %v", p.waitErr)
	}
}

// Without -l, SIGHUP does not kill the proxy (the default action of the
// signal): it says there is nothing to reopen.
func TestSIGHUPWithoutLogFile(t *testing.T) {
	ours(t)
	p := startProxy(t, proxyOpts{})
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, metricWait, "SIGHUP: logging to stderr, no log file to reopen")
	runPeer(t, "call_reply.py", p.peerArgs()...)
	p.alive(t)
}

// deploy/zmq-proxy.logrotate, run by logrotate itself: the paths and the
// postrotate command are the test's (its proxy is no systemd unit), the
// rest is the file's. The casts flowing meanwhile are all logged, once.
func TestLogrotateConfig(t *testing.T) {
	ours(t)
	lr, err := exec.LookPath("logrotate")
	if err != nil {
		if _, err = os.Stat("/usr/sbin/logrotate"); err != nil {
			t.Skip("no logrotate (apt-get install logrotate; .ci/test.sh does)")
		}
		lr = "/usr/sbin/logrotate"
	}
	conf, err := os.ReadFile(filepath.Join("..", "deploy", "zmq-proxy.logrotate"))
	if err != nil {
		t.Fatal(err)
	}
	const (
		paths = "/var/log/zmq-proxy/*.log /var/log/zmq-proxy-local/*.log {"
		post  = "systemctl kill --kill-whom=main --signal=HUP zmq-proxy.service zmq-proxy-local.service"
	)
	if !strings.Contains(string(conf), paths) || !strings.Contains(string(conf), post) {
		t.Fatalf("deploy/zmq-proxy.logrotate: want the lines %q and %q", paths, post)
	}
	for l := range strings.Lines(string(conf)) {
		if f := strings.Fields(l); len(f) > 0 && f[0] == "copytruncate" {
			t.Errorf("deploy/zmq-proxy.logrotate: copytruncate, want the file renamed and the proxy told by SIGHUP")
		}
	}

	dir := t.TempDir()
	logPath := filepath.Join(dir, "zmq-proxy.log")
	p := startLoggingProxy(t, logPath)
	s, n := startLoggedCasts(t, p)

	testConf := strings.NewReplacer(paths, filepath.Join(dir, "*.log")+" {",
		post, fmt.Sprintf("kill -HUP %d", p.pid())).Replace(string(conf))
	confPath := filepath.Join(dir, "logrotate.conf")
	if err := os.WriteFile(confPath, []byte(testConf), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(lr, "-f", "-v", "-s", filepath.Join(dir, "state"), confPath).CombinedOutput()
	if err != nil {
		t.Fatalf("logrotate: %v\n%s", err, out)
	}
	rotated := logPath + ".1" // delaycompress: compressed at the next rotation
	if _, err := os.Stat(rotated); err != nil {
		t.Fatalf("after logrotate: %v\n%s", err, out)
	}
	waitLogFileLine(t, logPath, "log file reopened")
	s.waitReceived(t, n+100)
	sent := stopLoggedCasts(t, s, p)

	seen := make(map[string]int)
	for _, path := range []string{rotated, logPath} {
		for _, l := range readLines(t, path) {
			if kv := parseLogLine(l); isCastLine(kv) {
				seen[kv["message_id"]]++
			}
		}
	}
	lost, twice := 0, 0
	for i := range sent {
		switch seen[fmt.Sprintf("c-%d", i)] {
		case 0:
			lost++
		case 1:
		default:
			twice++
		}
	}
	t.Logf("logrotate rotated %s; %d casts, %d logged, %d lost, %d twice", filepath.Base(logPath), sent, len(seen), lost, twice)
	if lost != 0 || twice != 0 || len(seen) != sent {
		t.Errorf("casts logged: %d of %d, %d lost, %d twice; want each once", len(seen), sent, lost, twice)
	}
}
