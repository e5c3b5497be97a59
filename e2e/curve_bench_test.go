package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
	"github.com/zmq-proxy/zmq-proxy/transport"
	"github.com/zmq-proxy/zmq-proxy/transport/security"
)

// BenchmarkCastThroughput sends b.N casts (100-byte payload) from one
// DEALER through a proxy to one DEALER, windowed so that no high-water
// mark is reached, and reports the rate and the proxy process's CPU time
// per message (user+system, from /proc), for zmq-proxy and for a libzmq
// proxy (zmq.proxy, ROUTER to DEALER, in curve_device.py), each with NULL
// and with CURVE. The load generator is the same Go transport for all
// four, and runs on the same machine: on a shared machine the rate is
// what was left for it, and the CPU per message is the steadier figure.
//
//	go test -run XXX -bench CastThroughput -benchtime 200000x ./e2e/
func BenchmarkCastThroughput(b *testing.B) {
	for _, tc := range []struct {
		name   string
		libzmq bool
		curve  bool
	}{
		{"zmq-proxy/NULL", false, false},
		{"zmq-proxy/CURVE", false, true},
		{"libzmq/NULL", true, false},
		{"libzmq/CURVE", true, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			server, client := benchKeyPair(b), benchKeyPair(b)
			fe, be, pid := startBenchProxy(b, tc.libzmq, tc.curve, server, client)
			var sec func() security.Mechanism
			if tc.curve {
				sec = func() security.Mechanism { return security.CurveClient(server.Public, client) }
			}
			runCasts(b, fe, be, sec, pid)
		})
	}
}

func benchKeyPair(b *testing.B) security.KeyPair {
	kp, err := security.GenerateKeyPair()
	if err != nil {
		b.Fatal(err)
	}
	return kp
}

// startBenchProxy starts the proxy and returns its frontend and backend
// endpoints and its process id.
func startBenchProxy(b *testing.B, libzmq, curve bool, server, client security.KeyPair) (fe, be string, pid int) {
	b.Helper()
	fe, be = "tcp://"+freeAddr2(b), "tcp://"+freeAddr2(b)
	var cmd *exec.Cmd
	if libzmq {
		args := []string{"-B", "-u", filepath.Join("testdata", "curve_device.py"), "--fe", fe, "--be", be}
		if curve {
			args = append(args, "--secret="+server.Secret.String())
		}
		cmd = exec.Command(python, args...)
	} else {
		_, fport, _ := strings.Cut(strings.TrimPrefix(fe, "tcp://"), ":")
		_, bport, _ := strings.Cut(strings.TrimPrefix(be, "tcp://"), ":")
		args := []string{"-H", "127.0.0.1", "-f", fport, "-b", bport, "-u", "zmq://127.0.0.1:6379/"}
		if curve {
			dir := b.TempDir()
			secret, allow := filepath.Join(dir, "proxy.key_secret"), filepath.Join(dir, "allow")
			os.WriteFile(secret, []byte(security.CertText(server, true)), 0o600)
			os.Mkdir(allow, 0o700)
			os.WriteFile(filepath.Join(allow, "client.key"), []byte(security.CertText(client, false)), 0o600)
			args = append(args, "--curve-secret-key", secret, "--curve-allow", allow)
		}
		cmd = exec.Command(binPath, args...)
	}
	out := newLineBuffer()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	b.Cleanup(p.kill)
	want := "proxy started"
	if libzmq {
		want = "READY"
	}
	if err := out.follow(startTimeout, p.done, func(l string) bool { return strings.Contains(l, want) }); err != nil {
		b.Fatalf("proxy did not start: %v\n%s", err, out)
	}
	return fe, be, cmd.Process.Pid
}

func freeAddr2(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// cpuTime is the process's user+system time.
func cpuTime(b *testing.B, pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

const benchWindow = 500

func runCasts(b *testing.B, fe, be string, sec func() security.Mechanism, pid int) {
	var got atomic.Int64
	wake := make(chan struct{}, 1)
	opts := func(id string) transport.Options {
		o := transport.Options{Identity: []byte(id), HWM: 10 * benchWindow}
		if sec != nil {
			o.Security = sec()
		}
		return o
	}
	so := opts("bench-host/compute/s1")
	so.OnBatch = func(bt *transport.Batch) {
		got.Add(int64(len(bt.Msgs)))
		bt.Release()
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	server := transport.NewDealer(so)
	defer server.Close()
	client := transport.NewDealer(opts("bench-client/1"))
	defer client.Close()
	if err := server.Connect(be); err != nil {
		b.Fatal(err)
	}
	if err := client.Connect(fe); err != nil {
		b.Fatal(err)
	}
	head := [][]byte{{}, []byte("1.0"), []byte("2"), []byte("bench-host/compute/s1"), []byte("m")}
	payload := [][]byte{make([]byte, 100)}
	// Warm up: until the server has one (the proxy drops casts for a
	// server it has not seen yet).
	testutil.CheckFor(b, startTimeout, func() error {
		client.Send(head, payload)
		if got.Load() == 0 {
			return errors.New("warm-up: nothing reached the server")
		}
		return nil
	})
	// Let stragglers of the warm-up arrive before counting from zero:
	// until nothing came for 200 ms.
	for quiet := false; !quiet; {
		select {
		case <-wake:
		case <-time.After(200 * time.Millisecond):
			quiet = true
		}
	}
	base := got.Load()
	cpu0 := cpuTime(b, pid)
	b.ResetTimer()
	start := time.Now()
	sent := 0
	for sent < b.N {
		if int64(sent)-(got.Load()-base) >= benchWindow {
			select {
			case <-wake:
			case <-time.After(time.Second):
			}
			continue
		}
		if !client.Send(head, payload) {
			b.Fatalf("cast %d dropped at the client", sent)
		}
		sent++
	}
	for got.Load()-base < int64(b.N) {
		select {
		case <-wake:
		case <-time.After(10 * time.Second):
			b.Fatalf("%d of %d casts arrived", got.Load()-base, b.N)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cpu := cpuTime(b, pid) - cpu0
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "proxy-cpu-us/msg")
}
