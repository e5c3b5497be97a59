package testutil

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// RedisBinary is Debian's redis-server, which Redis runs.
const RedisBinary = "/usr/bin/redis-server"

// Bounds of the Redis helper; they bound failures only.
const (
	redisReadyTimeout = 30 * time.Second
	redisKillTimeout  = 10 * time.Second
)

// RedisOptions configures a Redis server started by StartRedis.
type RedisOptions struct {
	// Password, when not empty, is required of clients (requirepass).
	Password string
}

// Redis is a redis-server process on 127.0.0.1 at a random port, with its
// working directory in t.TempDir() and persistence off. Kill and Start
// let a test take it away and bring it back on the same port (empty, as a
// restarted Redis without persistence is). The cleanup kills it by PID.
//
// Start and Kill call t.Fatal on failure: call them from the test's
// goroutine.
type Redis struct {
	t    testing.TB
	opts RedisOptions
	addr string
	dir  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has been waited for
	out  *bytes.Buffer
}

// StartRedis starts redis-server on a random loopback port and waits until
// it answers PING.
func StartRedis(t testing.TB, opts RedisOptions) *Redis {
	t.Helper()
	if _, err := exec.LookPath(RedisBinary); err != nil {
		t.Fatalf("%s is missing: run the project's test command, which installs it "+
			"(or apt-get install redis-server): %v", RedisBinary, err)
	}
	r := &Redis{t: t, opts: opts, addr: FreeAddr(t), dir: t.TempDir()}
	t.Cleanup(func() {
		if r.Running() {
			r.Kill()
		}
	})
	r.Start()
	return r
}

// Addr is host:port.
func (r *Redis) Addr() string { return r.addr }

// Port is the port Redis listens on.
func (r *Redis) Port() int {
	_, p, _ := net.SplitHostPort(r.addr)
	n, _ := strconv.Atoi(p)
	return n
}

// Running reports whether the process runs.
func (r *Redis) Running() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return false
	}
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

// Start starts redis-server on Addr and waits until it answers PING.
func (r *Redis) Start() {
	r.t.Helper()
	_, port, _ := net.SplitHostPort(r.addr)
	args := []string{"--port", port, "--bind", "127.0.0.1", "--dir", r.dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"}
	if r.opts.Password != "" {
		args = append(args, "--requirepass", r.opts.Password)
	}
	cmd := exec.Command(RedisBinary, args...)
	out := new(bytes.Buffer)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("start %s: %v", RedisBinary, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	r.mu.Lock()
	r.cmd, r.done, r.out = cmd, done, out
	r.mu.Unlock()

	deadline := time.Now().Add(redisReadyTimeout)
	wait := time.Millisecond
	for {
		err := r.ping()
		if err == nil {
			return
		}
		select {
		case <-done:
			r.t.Fatalf("redis-server on %s exited at start: %s", r.addr, out)
		default:
		}
		if time.Now().After(deadline) {
			r.Kill()
			r.t.Fatalf("redis-server on %s did not answer PING within %s: %v", r.addr, redisReadyTimeout, err)
		}
		time.Sleep(wait)
		wait = min(2*wait, 20*time.Millisecond)
	}
}

// Kill kills the process by its PID (SIGKILL) and waits until it is gone.
func (r *Redis) Kill() {
	r.t.Helper()
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	select {
	case <-done:
	case <-time.After(redisKillTimeout):
		r.t.Fatalf("redis-server (pid %d) not reaped within %s of SIGKILL", cmd.Process.Pid, redisKillTimeout)
	}
}

// Restart kills Redis and starts it again on the same port, empty.
func (r *Redis) Restart() {
	r.t.Helper()
	r.Kill()
	r.Start()
}

// ping sends PING (with AUTH first when a password is set) over a fresh
// connection and checks the answer.
func (r *Redis) ping() error {
	c, err := net.DialTimeout("tcp", r.addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	br := bufio.NewReader(c)
	if r.opts.Password != "" {
		if _, err := fmt.Fprintf(c, "AUTH %s\r\n", r.opts.Password); err != nil {
			return err
		}
		if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
			return fmt.Errorf("AUTH: %q %v", line, err)
		}
	}
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := br.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING: got %q, want +PONG", strings.TrimSpace(line))
	}
	return nil
}
