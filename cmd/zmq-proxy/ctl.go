package main

import (
	"github.com/zmq-proxy/zmq-proxy/actors"

	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// ctlUsage is the -h text of "zmq-proxy ctl".
const ctlUsage = `Usage: zmq-proxy ctl pause|resume|stats --admin-addr HOST:PORT [--admin-token-file FILE] [--timeout DURATION]

Steer a running proxy through its admin endpoint: give ctl the address the
proxy was started with, --admin-addr (--admin is the same flag; an empty
HOST is loopback, as for the proxy).
  pause    stop reading from the frontend: clients' messages wait in their
           own queues and TCP buffers, replies flow on
  resume   read from the frontend again
  stats    print the counters of every socket as JSON

--admin-token-file FILE sends the token in FILE (the proxy's
--admin-token-file) as "Authorization: Bearer TOKEN".

Exit status: 0; 1 when the proxy does not answer or refuses; 2 for a bad
command or option.
`

// runCtl is "zmq-proxy ctl": it returns the exit code.
func runCtl(args []string, stdout, stderr io.Writer) int {
	fail := func(code int, err error) int {
		fmt.Fprintf(stderr, "%s ctl: %v\n", progName, err)
		return code
	}
	fs := flag.NewFlagSet(progName+" ctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var admin string
	fs.StringVar(&admin, "admin-addr", "", "")
	fs.StringVar(&admin, "admin", "", "") // its first name, kept for scripts
	timeout := fs.Duration("timeout", 5*time.Second, "")
	tokenFile := fs.String("admin-token-file", "", "")
	// The command may come first or after the flags.
	var cmd string
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, ctlUsage)
			return 0
		}
		return fail(2, err)
	}
	if cmd == "" && fs.NArg() > 0 {
		cmd = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return fail(2, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	var method, path string
	switch cmd {
	case "pause", "resume":
		method, path = http.MethodPost, "/"+cmd
	case "stats":
		method, path = http.MethodGet, "/stats"
	case "":
		return fail(2, errors.New("no command: give pause, resume or stats"))
	default:
		return fail(2, fmt.Errorf("unknown command %q: give pause, resume or stats", cmd))
	}
	if admin == "" {
		return fail(2, errors.New("--admin-addr is required: the HOST:PORT the proxy was started with as its --admin-addr"))
	}
	if strings.HasPrefix(admin, ":") { // as the proxy reads it: loopback
		admin = "127.0.0.1" + admin
	}
	addr, err := parseDialAddr(admin)
	if err != nil {
		return fail(2, fmt.Errorf("--admin-addr: %q is %w", admin, err))
	}
	if *timeout <= 0 {
		return fail(2, fmt.Errorf("--timeout: %v is not a positive duration", *timeout))
	}
	var token string
	if *tokenFile != "" {
		if token, err = readTokenFile(*tokenFile); err != nil {
			return fail(2, fmt.Errorf("--admin-token-file: %s: not a token file: %w", *tokenFile, err))
		}
	}
	cli := &http.Client{Timeout: *timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	req, err := http.NewRequest(method, "http://"+addr+path, nil)
	if err != nil {
		return fail(2, err)
	}
	if method == http.MethodPost {
		// The admin endpoint refuses a POST that a web page could send.
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := cli.Do(req)
	if err != nil {
		return fail(1, fmt.Errorf("no answer from %s: %w", addr, err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fail(1, fmt.Errorf("%s: %w", addr, err))
	}
	if resp.StatusCode != http.StatusOK {
		return fail(1, fmt.Errorf("%s: %s: %s", addr, resp.Status, bytes.TrimSpace(body)))
	}
	if cmd == "stats" {
		var out bytes.Buffer
		if err := json.Indent(&out, body, "", "  "); err != nil {
			return fail(1, fmt.Errorf("%s: not JSON: %w", addr, err))
		}
		fmt.Fprint(stdout, out.String())
		return 0
	}
	var r actors.AdminReply
	if err := json.Unmarshal(body, &r); err != nil {
		return fail(1, fmt.Errorf("%s: not JSON: %w", addr, err))
	}
	switch {
	case cmd == "pause" && r.Changed:
		fmt.Fprintln(stdout, "paused")
	case cmd == "pause":
		fmt.Fprintln(stdout, "already paused")
	case r.Changed:
		fmt.Fprintln(stdout, "resumed")
	default:
		fmt.Fprintln(stdout, "not paused")
	}
	return 0
}
