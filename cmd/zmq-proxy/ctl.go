package main

import (
	"github.com/zmq-proxy/zmq-proxy/actors"
	"github.com/zmq-proxy/zmq-proxy/internal/config"

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
		fmt.Fprintf(stderr, "%s ctl: %v\n", config.ProgName, err)
		return code
	}
	req, err := parseCtl(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, ctlUsage)
		return 0
	}
	if err != nil {
		return fail(2, err)
	}
	out, err := req.do()
	if err != nil {
		return fail(1, err)
	}
	fmt.Fprint(stdout, out)
	return 0
}

// ctlRequest is one ctl command to one admin endpoint.
type ctlRequest struct {
	cmd          string // pause, resume or stats
	method, path string
	addr         string // host:port
	token        string
	timeout      time.Duration
}

// parseCtl parses ctl's command line; flag.ErrHelp for -h.
func parseCtl(args []string) (*ctlRequest, error) {
	fs := flag.NewFlagSet(config.ProgName+" ctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var admin string
	fs.StringVar(&admin, "admin-addr", "", "")
	fs.StringVar(&admin, "admin", "", "") // its first name, kept for scripts
	timeout := fs.Duration("timeout", 5*time.Second, "")
	tokenFile := fs.String("admin-token-file", "", "")
	// The command may come first or after the flags.
	r := &ctlRequest{}
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		r.cmd, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if r.cmd == "" && fs.NArg() > 0 {
		r.cmd = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch r.cmd {
	case "pause", "resume":
		r.method, r.path = http.MethodPost, "/"+r.cmd
	case "stats":
		r.method, r.path = http.MethodGet, "/stats"
	case "":
		return nil, errors.New("no command: give pause, resume or stats")
	default:
		return nil, fmt.Errorf("unknown command %q: give pause, resume or stats", r.cmd)
	}
	if admin == "" {
		return nil, errors.New("--admin-addr is required: the HOST:PORT the proxy was started with as its --admin-addr")
	}
	if strings.HasPrefix(admin, ":") { // as the proxy reads it: loopback
		admin = "127.0.0.1" + admin
	}
	var err error
	if r.addr, err = config.ParseDialAddr(admin); err != nil {
		return nil, fmt.Errorf("--admin-addr: %q is %w", admin, err)
	}
	if r.timeout = *timeout; r.timeout <= 0 {
		return nil, fmt.Errorf("--timeout: %v is not a positive duration", *timeout)
	}
	if *tokenFile != "" {
		if r.token, err = config.ReadTokenFile(*tokenFile); err != nil {
			return nil, fmt.Errorf("--admin-token-file: %s: not a token file: %w", *tokenFile, err)
		}
	}
	return r, nil
}

// do sends the request and returns what to print.
func (r *ctlRequest) do() (string, error) {
	cli := &http.Client{Timeout: r.timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	req, err := http.NewRequest(r.method, "http://"+r.addr+r.path, nil)
	if err != nil {
		return "", err
	}
	if r.method == http.MethodPost {
		// The admin endpoint refuses a POST that a web page could send.
		req.Header.Set("Content-Type", "application/json")
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	resp, err := cli.Do(req)
	if err != nil {
		return "", fmt.Errorf("no answer from %s: %w", r.addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("%s: %w", r.addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s: %s", r.addr, resp.Status, bytes.TrimSpace(body))
	}
	if r.cmd == "stats" {
		var out bytes.Buffer
		if err := json.Indent(&out, body, "", "  "); err != nil {
			return "", fmt.Errorf("%s: not JSON: %w", r.addr, err)
		}
		return out.String(), nil
	}
	var a actors.AdminReply
	if err := json.Unmarshal(body, &a); err != nil {
		return "", fmt.Errorf("%s: not JSON: %w", r.addr, err)
	}
	switch {
	case r.cmd == "pause" && a.Changed:
		return "paused\n", nil
	case r.cmd == "pause":
		return "already paused\n", nil
	case a.Changed:
		return "resumed\n", nil
	}
	return "not paused\n", nil
}
