// Package e2e runs the built zmq-proxy binary as a real process against
// libzmq peers (Python scripts on Debian's python3-zmq, in testdata/).
//
// With ZP_REF=cproxy the same tests run the libzmq reference proxy
// (shared/bench/cproxy.c) instead: that proves the tests encode libzmq's
// behaviour, and lets them be developed before the proxy works. cproxy has
// no metrics, so metric checks are left out in that mode.
package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
)

// python is Debian's interpreter, the one with python3-zmq; the pyenv
// python3 on PATH has no zmq.
const python = "/usr/bin/python3"

// Failure bounds. They only bound how long a broken proxy can hang a test;
// nothing waits for them to pass.
const (
	startTimeout = 15 * time.Second  // until the proxy listens
	stopTimeout  = 5 * time.Second   // from SIGTERM to SIGKILL
	peerTimeout  = 60 * time.Second  // each wait inside a peer script
	peerKill     = 150 * time.Second // a whole peer script
	metricWait   = 15 * time.Second  // until a counter reaches its value
)

// refCproxy is the value of ZP_REF that selects the reference proxy.
const refCproxy = "cproxy"

// cproxyFrontendID is the frontend ROUTER identity cproxy sets.
const cproxyFrontendID = "zmq-proxy-fe"

var (
	refMode string // "" (our zmq-proxy) or refCproxy
	binPath string // the binary under test, built with -race
	// plainBinPath is the same binary without -race, for the tests that
	// measure the proxy's memory: the race detector's shadow memory
	// multiplies what a process holds, so RSS bounds hold for the binary
	// as shipped. For cproxy it is binPath.
	plainBinPath string
	httpClient   = &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true},
	}
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "zmq-proxy-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)

	refMode = os.Getenv("ZP_REF")
	// A -race binary sleeps a second at exit by default, for reports of
	// other goroutines to come in; the processes here would seem a second
	// slower to exit than they are (the systemd watchdog test notices).
	// A race is still reported, and exits 66.
	if os.Getenv("GORACE") == "" {
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	var build *exec.Cmd
	switch {
	case refMode == "" && os.Getenv("ZP_BIN") != "":
		// A binary built elsewhere (an older one, to measure what a test
		// asserts before a change): used as is, for both builds.
		binPath = os.Getenv("ZP_BIN")
		plainBinPath = binPath
		build = exec.Command("true")
	case refMode == "":
		binPath = filepath.Join(dir, "zmq-proxy")
		plainBinPath = filepath.Join(dir, "plain", "zmq-proxy")
		plain := exec.Command("go", "build", "-o", plainBinPath, "./cmd/zmq-proxy")
		plain.Dir = ".."
		if out, err := plain.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %v: %v\n%s", plain.Args, err, out)
			return 1
		}
		build = exec.Command("go", "build", "-race", "-o", binPath, "./cmd/zmq-proxy")
		build.Dir = ".."
	case refMode == refCproxy:
		binPath = filepath.Join(dir, "cproxy")
		plainBinPath = binPath
		// shared/ sits beside the repository.
		build = exec.Command("gcc", "-O2", "-o", binPath, "../../shared/bench/cproxy.c", "-lzmq")
	default:
		fmt.Fprintf(os.Stderr, "e2e: ZP_REF=%q: want empty (our zmq-proxy) or %q\n", refMode, refCproxy)
		return 2
	}
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v: %v\n%s", build.Args, err, out)
		return 1
	}

	code := m.Run()
	httpClient.CloseIdleConnections()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: goroutines leaked: %v\n", err)
			return 1
		}
	}
	return code
}

// pythonModules holds, per module, a sync.OnceValue that imports it once
// with python.
var pythonModules sync.Map

// needPythonModule fails the test unless python imports module, from the
// Debian package pkg (what says what the module is).
func needPythonModule(t *testing.T, module, pkg, what string) {
	t.Helper()
	check, _ := pythonModules.LoadOrStore(module, sync.OnceValue(func() error {
		out, err := exec.Command(python, "-c", "import "+module).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s -c 'import %s': %v\n%s", python, module, err, out)
		}
		return nil
	}))
	if err := check.(func() error)(); err != nil {
		t.Fatalf("%s is missing: run the project's test command, which installs it "+
			"(or apt-get install %s).\n%v", what, pkg, err)
	}
}

// needPython fails the test if libzmq's Python binding is missing.
func needPython(t *testing.T) {
	t.Helper()
	needPythonModule(t, "zmq", "python3-zmq", "python3-zmq (libzmq's Python binding)")
}

// isRef reports whether the reference proxy runs instead of ours.
func isRef() bool { return refMode != "" }

// lineBuffer collects a process's output, whole lines at a time, for
// waiting on a line and for printing on failure. It is an io.Writer safe
// for use by exec's copying goroutine and a test at once.
type lineBuffer struct {
	mu      sync.Mutex
	partial []byte
	lines   []string
	changed chan struct{} // closed and replaced on every new line
}

func newLineBuffer() *lineBuffer { return &lineBuffer{changed: make(chan struct{})} }

func (b *lineBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.partial = append(b.partial, p...)
	added := false
	for {
		i := bytes.IndexByte(b.partial, '\n')
		if i < 0 {
			break
		}
		b.lines = append(b.lines, string(b.partial[:i]))
		b.partial = b.partial[i+1:]
		added = true
	}
	if added {
		close(b.changed)
		b.changed = make(chan struct{})
	}
	return len(p), nil
}

// since returns the lines from index i on, and a channel closed when more
// come.
func (b *lineBuffer) since(i int) ([]string, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if i > len(b.lines) {
		i = len(b.lines)
	}
	return append([]string(nil), b.lines[i:]...), b.changed
}

// Why follow stopped without a match.
var (
	errFollowExited  = errors.New("the process exited")
	errFollowTimeout = errors.New("timed out")
)

// follow calls match on every line, from the first, as lines come, until
// match returns true (nil). It stops with errFollowExited when done closes
// (after the lines written before it), or errFollowTimeout.
func (b *lineBuffer) follow(timeout time.Duration, done <-chan struct{}, match func(string) bool) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for next := 0; ; {
		lines, changed := b.since(next)
		next += len(lines)
		for _, l := range lines {
			if match(l) {
				return nil
			}
		}
		select {
		case <-changed:
		case <-done:
			if lines, _ := b.since(next); len(lines) > 0 {
				continue // what it wrote last, before saying it is gone
			}
			return errFollowExited
		case <-deadline.C:
			return errFollowTimeout
		}
	}
}

func (b *lineBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := strings.Join(b.lines, "\n")
	if len(b.partial) > 0 {
		s += "\n" + string(b.partial)
	}
	return s
}

// process is a child process that a test started and waits for.
type process struct {
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error // set before done is closed
}

func startProcess(t *testing.T, cmd *exec.Cmd, out, errOut io.Writer) *process {
	t.Helper()
	cmd.Stdout, cmd.Stderr = out, errOut
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", cmd.Args, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitWithin waits at most d for the process to exit and reports whether
// it did; one that did not is killed.
func (p *process) exitWithin(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-p.done:
		return true
	case <-timer.C:
		p.kill()
		return false
	}
}

// kill ends the process by its PID and waits for it.
func (p *process) kill() {
	if !p.exited() {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

// proxyOpts says how to start a proxy.
type proxyOpts struct {
	single bool // single-router: only a frontend port is given
	ack    bool // -a / --ack-pub-sub
	local  bool // -lp: a local publisher proxy, a PUB and no frontend
	// registry are the registry flags, in place of the default
	// "-u zmq://127.0.0.1:6379/" (none): "-u", "zmq+etcd://127.0.0.1:PORT/",
	// or "--etcd-addr", "127.0.0.1:PORT", "--state-dir", dir. Ours only.
	registry []string
	// args are more flags (ports, --name, --target-expire). Ours only.
	args []string
	// refArgs are extra cproxy flags, for the reference mode only.
	refArgs []string
	// plain runs the binary built without -race (tests that measure RSS).
	plain bool
	// bin runs this binary instead, a variant a test built (idle_rss_test.go).
	bin string
	// wrap runs the binary under this command (which must exec it, so
	// that the process is the proxy), e.g. prlimit. Ours only.
	wrap []string
}

// proxy is a running proxy process and the addresses it bound.
type proxy struct {
	*process
	log       *lineBuffer
	frontend  string // tcp://host:port
	backend   string // "" in single-router mode
	publisher string
	metrics   string // host:port, "" when the proxy has no metrics (cproxy)
	// feID is the frontend identity if known in advance (cproxy), else "".
	feID    string
	stopped bool // stop was called; the cleanup leaves it alone
}

// startProxy starts the proxy under test and waits until it listens. Its
// cleanup stops it with SIGTERM and checks that it exits with status 0.
func startProxy(t *testing.T, o proxyOpts) *proxy {
	t.Helper()
	needPython(t)
	if isRef() && (o.local || o.registry != nil || o.args != nil) {
		t.Skipf("ZP_REF=%s: cproxy has no registry, no local publisher mode and none of our flags", refMode)
	}
	p := &proxy{log: newLineBuffer()}
	var cmd *exec.Cmd
	if isRef() {
		p.frontend = "tcp://" + freeAddr(t)
		p.publisher = "tcp://" + freeAddr(t)
		args := []string{"--fe", p.frontend, "--pub", p.publisher}
		if !o.single {
			p.backend = "tcp://" + freeAddr(t)
			args = append(args, "--be", p.backend)
		}
		if o.ack {
			args = append(args, "--ack")
		}
		args = append(args, o.refArgs...)
		p.feID = cproxyFrontendID
		cmd = exec.Command(binPath, args...)
	} else {
		args := []string{"-H", "127.0.0.1"}
		if o.single {
			// oslo.messaging's rule: a frontend port and no backend port make a
			// single-router proxy, so the port must be a real one.
			_, port, _ := net.SplitHostPort(freeAddr(t))
			args = append(args, "-f", port)
		}
		if o.ack {
			args = append(args, "-a")
		}
		if o.local {
			args = append(args, "-lp")
		}
		args = append(args, "--metrics-addr", "127.0.0.1:0")
		if o.registry != nil {
			args = append(args, o.registry...)
		} else {
			// The data path alone: no registry (oslo.messaging's zmq:// URL), so
			// no etcd on a fixed port.
			args = append(args, "-u", "zmq://127.0.0.1:6379/")
		}
		args = append(args, o.args...)
		bin := binPath
		if o.plain {
			bin = plainBinPath
		}
		if o.bin != "" {
			bin = o.bin
		}
		if o.wrap != nil {
			args = append([]string{bin}, args...)
			bin, args = o.wrap[0], append(o.wrap[1:len(o.wrap):len(o.wrap)], args...)
		}
		cmd = exec.Command(bin, args...)
	}
	p.process = startProcess(t, cmd, p.log, p.log)
	t.Cleanup(func() { p.cleanup(t) })

	if isRef() {
		p.waitListening(t)
	} else {
		p.waitStarted(t, o)
	}
	t.Logf("proxy %s: frontend=%s backend=%s publisher=%s metrics=%s",
		filepath.Base(binPath), p.frontend, p.backend, p.publisher, p.metrics)
	return p
}

// waitStarted waits for our proxy's "proxy started" log line and reads the
// addresses from it.
func (p *proxy) waitStarted(t *testing.T, o proxyOpts) {
	t.Helper()
	var line string
	var kv map[string]string
	err := p.log.follow(startTimeout, p.done, func(l string) bool {
		line, kv = l, parseLogLine(l)
		return kv["msg"] == "proxy started"
	})
	switch {
	case errors.Is(err, errFollowExited):
		p.stopped = true // reported here, not again by the cleanup
		t.Fatalf("proxy exited before it started: %v\nlog:\n%s", p.waitErr, p.log)
	case err != nil:
		t.Fatalf("no \"proxy started\" log line within %v\nlog:\n%s", startTimeout, p.log)
	}
	p.frontend, p.backend = kv["frontend"], kv["backend"]
	p.publisher = kv["publisher"]
	p.metrics = strings.TrimSuffix(strings.TrimPrefix(kv["metrics"], "http://"), "/")
	wantKind := "double-router"
	switch {
	case o.local:
		wantKind = "local"
	case o.single:
		wantKind = "single-router"
	}
	switch {
	case kv["kind"] != wantKind:
		t.Fatalf("proxy started as kind=%q, want %q\nlog:\n%s", kv["kind"], wantKind, p.log)
	case o.local && (p.frontend != "" || p.backend != ""):
		t.Fatalf("local proxy has frontend=%q backend=%q, want neither: %q", p.frontend, p.backend, line)
	case o.local && (p.publisher == "" || p.metrics == ""):
		t.Fatalf("proxy started line lacks publisher or metrics: %q", line)
	case o.local:
	case p.frontend == "" || p.publisher == "" || p.metrics == "":
		t.Fatalf("proxy started line lacks frontend, publisher or metrics: %q", line)
	case o.single && p.backend != "":
		t.Fatalf("single-router proxy has backend=%q, want none", p.backend)
	case !o.single && p.backend == "":
		t.Fatalf("double-router proxy has no backend: %q", line)
	}
}

// waitListening waits until cproxy accepts TCP connections on its ports.
func (p *proxy) waitListening(t *testing.T) {
	t.Helper()
	for _, ep := range []string{p.frontend, p.backend, p.publisher} {
		if ep == "" {
			continue
		}
		addr := strings.TrimPrefix(ep, "tcp://")
		testutil.CheckFor(t, startTimeout, func() error {
			if p.exited() {
				p.stopped = true
				t.Fatalf("cproxy exited: %v\nlog:\n%s", p.waitErr, p.log)
			}
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return fmt.Errorf("cproxy does not listen on %s: %w", addr, err)
			}
			c.Close()
			return nil
		})
	}
}

// signal sends sig to the proxy and waits for it to exit, at most
// stopTimeout; then it kills it. It returns how long the exit took and
// whether it came before the kill.
func (p *proxy) signal(t *testing.T, sig os.Signal) (time.Duration, bool) {
	t.Helper()
	p.stopped = true
	if p.exited() {
		return 0, true
	}
	start := time.Now()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Errorf("signal %v to the proxy: %v", sig, err)
	}
	inTime := p.exitWithin(stopTimeout)
	return time.Since(start), inTime
}

// checkExit0 fails the test unless the proxy exited with status 0 after
// sig, before the kill.
func (p *proxy) checkExit0(t *testing.T, sig os.Signal, took time.Duration, inTime bool) {
	t.Helper()
	switch {
	case !inTime:
		t.Errorf("proxy did not exit within %v of %v; killed\nlog:\n%s", stopTimeout, sig, p.log)
	case p.waitErr != nil:
		t.Errorf("proxy exited with %v after %v, want exit status 0\nlog:\n%s", p.waitErr, sig, p.log)
	default:
		t.Logf("proxy exited 0 on %v in %v", sig, took.Round(time.Millisecond))
	}
}

func (p *proxy) cleanup(t *testing.T) {
	if p.stopped {
		p.kill()
		return
	}
	if p.exited() {
		t.Errorf("proxy exited during the test: %v\nlog:\n%s", p.waitErr, p.log)
		return
	}
	took, inTime := p.signal(t, syscall.SIGTERM)
	p.checkExit0(t, syscall.SIGTERM, took, inTime)
}

// alive fails the test if the proxy process has exited.
func (p *proxy) alive(t *testing.T) {
	t.Helper()
	if p.exited() {
		p.stopped = true
		t.Fatalf("proxy exited during the test: %v\nlog:\n%s", p.waitErr, p.log)
	}
	if p.hasMetrics() {
		resp, err := httpClient.Get("http://" + p.metrics + "/healthz")
		if err != nil {
			t.Fatalf("GET /healthz: %v", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /healthz: got %s, want 200 OK", resp.Status)
		}
	}
}

// peerArgs are the endpoint flags every peer script takes.
func (p *proxy) peerArgs() []string {
	args := []string{"--fe", p.frontend, "--be", p.backend, "--pub", p.publisher,
		"--timeout", strconv.Itoa(int(peerTimeout / time.Second))}
	if p.feID != "" {
		args = append(args, "--fe-id", p.feID)
	}
	return args
}

// rssBytes is the proxy's resident set size, from /proc/<pid>/status.
func (p *proxy) rssBytes(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("read the proxy's RSS: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "VmRSS:" && f[2] == "kB" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", l, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", p.cmd.Process.Pid)
	return 0
}

// parseLogLine splits a log/slog TextHandler line into its keys and values.
func parseLogLine(line string) map[string]string {
	kv := map[string]string{}
	s := line
	for {
		s = strings.TrimLeft(s, " ")
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return kv
		}
		key := s[:eq]
		if strings.ContainsAny(key, " \"") {
			return kv
		}
		s = s[eq+1:]
		var val string
		if strings.HasPrefix(s, `"`) {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				return kv
			}
			val, _ = strconv.Unquote(q)
			s = s[len(q):]
		} else {
			end := strings.IndexByte(s, ' ')
			if end < 0 {
				end = len(s)
			}
			val, s = s[:end], s[end:]
		}
		kv[key] = val
	}
}

// freeAddr returns 127.0.0.1:port for a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	return testutil.FreeAddr(t)
}

// peer is a running Python peer script.
type peer struct {
	*process
	name   string
	out    *lineBuffer
	stdin  io.WriteCloser
	stderr *lineBuffer
	next   int // index of the next stdout line to look at
}

// startPeer runs testdata/<script> with /usr/bin/python3. Its cleanup kills
// it if it is still running.
func startPeer(t *testing.T, script string, args ...string) *peer {
	t.Helper()
	return startPeerEnv(t, nil, script, args...)
}

// startPeerEnv is startPeer with more environment variables.
func startPeerEnv(t *testing.T, env []string, script string, args ...string) *peer {
	t.Helper()
	needPython(t)
	cmd := exec.Command(python, append([]string{"-B", "-u", filepath.Join("testdata", script)}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatalf("stdin of %s: %v", script, err)
	}
	p := &peer{name: script, stdin: stdin, out: newLineBuffer(), stderr: newLineBuffer()}
	p.process = startProcess(t, cmd, p.out, p.stderr)
	t.Cleanup(func() {
		stdin.Close()
		p.kill()
	})
	return p
}

func (p *peer) output() string {
	return fmt.Sprintf("--- %s stdout:\n%s\n--- %s stderr:\n%s", p.name, p.out, p.name, p.stderr)
}

// awaitStep waits until the script prints "STEP name", calling tick (if not
// nil) every 100 ms meanwhile. The script then waits for proceed.
func (p *peer) awaitStep(t *testing.T, name string, tick func()) {
	t.Helper()
	kill := time.NewTimer(peerKill)
	defer kill.Stop()
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	for {
		lines, changed := p.out.since(p.next)
		for _, l := range lines {
			p.next++
			if rest, ok := strings.CutPrefix(l, "STEP "); ok {
				if rest != name {
					t.Fatalf("%s reached step %q, want %q\n%s", p.name, rest, name, p.output())
				}
				return
			}
		}
		select {
		case <-changed:
		case <-ticker.C:
			if tick != nil {
				tick()
			}
		case <-p.done:
			// Look at what it printed last before saying it is gone.
			if lines, _ := p.out.since(p.next); len(lines) > 0 {
				continue
			}
			t.Fatalf("%s exited (%v) before step %q\n%s", p.name, p.waitErr, name, p.output())
		case <-kill.C:
			p.kill()
			t.Fatalf("%s did not reach step %q within %v; killed\n%s", p.name, name, peerKill, p.output())
		}
	}
}

// proceed lets the script go on from its current step.
func (p *peer) proceed(t *testing.T) {
	t.Helper()
	if _, err := io.WriteString(p.stdin, "go\n"); err != nil {
		t.Fatalf("%s: tell it to go on: %v\n%s", p.name, err, p.output())
	}
}

// result waits for the script to end, fails the test unless it exited with
// status 0, and returns its RESULT.
func (p *peer) result(t *testing.T) map[string]any {
	t.Helper()
	if !p.exitWithin(peerKill) {
		t.Fatalf("%s did not finish within %v; killed\n%s", p.name, peerKill, p.output())
	}
	if p.waitErr != nil {
		t.Fatalf("%s failed: %v\n%s", p.name, p.waitErr, p.output())
	}
	lines, _ := p.out.since(0)
	for i := len(lines) - 1; i >= 0; i-- {
		if js, ok := strings.CutPrefix(lines[i], "RESULT "); ok {
			var res map[string]any
			if err := json.Unmarshal([]byte(js), &res); err != nil {
				t.Fatalf("%s: bad RESULT line %q: %v", p.name, lines[i], err)
			}
			t.Logf("%s: %s", p.name, js)
			return res
		}
	}
	t.Fatalf("%s printed no RESULT line\n%s", p.name, p.output())
	return nil
}

// runPeer runs a script that has no steps to its end.
func runPeer(t *testing.T, script string, args ...string) map[string]any {
	t.Helper()
	return startPeer(t, script, args...).result(t)
}

// sample is one line of the Prometheus text format.
func (p *proxy) hasMetrics() bool { return p.metrics != "" }

// scrape reads the proxy's /metrics.
func (p *proxy) scrape(t *testing.T) testutil.Metrics {
	t.Helper()
	m, err := testutil.Scrape(p.metrics)
	if err != nil {
		t.Fatalf("scrape %s: %v", p.metrics, err)
	}
	return m
}

// metric is the sum of the samples named name whose labels include the
// given ones (pairs: key, value). A counter that was never incremented may
// be absent: it counts as 0.
func (p *proxy) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	return p.scrape(t).Sum(name, labels...)
}

// waitMetric waits until cond holds for the metric (counters are updated
// by the proxy's own goroutines, a moment after the traffic) and returns
// its value.
func (p *proxy) waitMetric(t *testing.T, cond func(float64) bool, want, name string, labels ...string) float64 {
	t.Helper()
	var v float64
	testutil.CheckFor(t, metricWait, func() error {
		if v = p.metric(t, name, labels...); !cond(v) {
			return fmt.Errorf("%s%v: got %v, want %s", name, labels, v, want)
		}
		return nil
	})
	return v
}

// counters are the drop counters of one scrape, by socket and reason.
type counters map[[2]string]float64

const dropped = "zmqproxy_messages_dropped_total"

func (p *proxy) drops(t *testing.T) counters {
	t.Helper()
	c := counters{}
	p.scrape(t).Each(dropped, func(labels map[string]string, v float64) {
		c[[2]string{labels["socket"], labels["reason"]}] += v
	})
	return c
}

// diff is what rose from before to c, the keys that did not rise left out.
func (c counters) diff(before counters) counters {
	d := counters{}
	for k, v := range c {
		if v != before[k] {
			d[k] = v - before[k]
		}
	}
	return d
}

func (c counters) String() string {
	var parts []string
	for k, v := range c {
		parts = append(parts, fmt.Sprintf("%s/%s=%v", k[0], k[1], v))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

// skipMetrics says so in the log when the proxy has no metrics (cproxy).
func skipMetrics(t *testing.T, p *proxy) bool {
	t.Helper()
	if p.hasMetrics() {
		return false
	}
	t.Logf("ZP_REF=%s: metric checks left out (cproxy has no metrics)", refMode)
	return true
}

// waitLog waits until the proxy has logged a line with msg=<msg> whose
// keys include the given ones (pairs: key, value), looking from its first
// line, and returns that line's keys and values. It fails the test if the
// proxy exits without logging it, or after timeout.
func (p *proxy) waitLog(t *testing.T, timeout time.Duration, msg string, kvs ...string) map[string]string {
	t.Helper()
	return p.waitLogFunc(t, timeout, fmt.Sprintf("msg=%q %v", msg, kvs), func(kv map[string]string) bool {
		if kv["msg"] != msg {
			return false
		}
		for i := 0; i+1 < len(kvs); i += 2 {
			if kv[kvs[i]] != kvs[i+1] {
				return false
			}
		}
		return true
	})
}

// waitLogFunc is waitLog for the first line for which match holds.
func (p *proxy) waitLogFunc(t *testing.T, timeout time.Duration, what string, match func(map[string]string) bool) map[string]string {
	t.Helper()
	var kv map[string]string
	err := p.log.follow(timeout, p.done, func(l string) bool { kv = parseLogLine(l); return match(kv) })
	switch {
	case errors.Is(err, errFollowExited):
		p.stopped = true // reported here, not again by the cleanup
		t.Fatalf("proxy exited (%v) without logging %s\nlog:\n%s", p.waitErr, what, p.log)
	case err != nil:
		t.Fatalf("proxy did not log %s within %v\nlog:\n%s", what, timeout, p.log)
	}
	return kv
}

// logTime is the time= of a parsed log line (millisecond precision), or
// the zero time.
func logTime(kv map[string]string) time.Time {
	at, _ := time.Parse(time.RFC3339Nano, kv["time"])
	return at
}

// pid is the proxy's process id.
func (p *proxy) pid() int { return p.cmd.Process.Pid }
