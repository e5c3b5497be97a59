package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/zmq-proxy/zmq-proxy/internal/config"
	"github.com/zmq-proxy/zmq-proxy/rpc"
)

// jsonArg parses an optional JSON argument; "" = {}. JSON_ARGS, a
// method's arguments by name, must be an object.
func jsonArg(what, s string) (any, error) {
	if s == "" {
		return map[string]any{}, nil
	}
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, fmt.Errorf("%s %q is not JSON: %w", what, s, err)
	}
	if _, ok := v.(map[string]any); !ok && what == "JSON_ARGS" {
		return nil, fmt.Errorf(`%s %s is not a JSON object: a method's arguments go by name, as in '{"x": 1}'`, what, s)
	}
	return v, nil
}

// runSend is call, cast, fanout and notify.
func runSend(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	var payload any
	s, code := setupClient(ctx, config.CmdRPC, name, args, stdout, stderr, [2]int{2, 3}, func(c *config.Config) (err error) {
		if len(c.Args) == 3 {
			what := "JSON_ARGS"
			if name == "notify" {
				what = "JSON_PAYLOAD"
			}
			payload, err = jsonArg(what, c.Args[2])
		}
		return err
	})
	if s == nil {
		return code
	}
	defer s.done()
	fail := func(code int, err error) int {
		fmt.Fprintf(stderr, "%s %s: %v\n", config.ProgName, name, err)
		return code
	}
	first := s.c.Args[0]
	// The arguments are checked before anything is sent.
	target, err := sendTarget(name, first)
	if err != nil {
		return fail(2, err)
	}
	// Finding the proxies is bounded as the registry is, the message by
	// --timeout.
	nctx, cancel := context.WithTimeout(ctx, s.c.RegistryWait())
	cli, err := rpc.NewClient(nctx, s.clientConfig())
	cancel()
	if err != nil {
		return fail(1, err)
	}
	defer cli.Close()
	ctx, cancel = context.WithTimeout(ctx, s.c.ListTimeout)
	defer cancel()
	return send(ctx, cli, s.c, name, target, payload, stdout, stderr)
}

// sendTarget checks the first argument: TOPIC[.SERVER] for call and
// cast, TOPIC.PRIORITY for notify.
func sendTarget(name, first string) (rpc.Target, error) {
	switch name {
	case "call", "cast":
		t, err := rpc.ParseTarget(first)
		if err != nil {
			return t, fmt.Errorf("%q is not TOPIC[.SERVER]: %w", first, err)
		}
		return t, nil
	case "notify":
		i := strings.LastIndex(first, ".")
		if i <= 0 || i == len(first)-1 {
			return rpc.Target{}, fmt.Errorf("%q is not TOPIC.PRIORITY", first)
		}
	}
	return rpc.Target{}, nil
}

// send sends one call, cast, fanout or notification, and prints a call's
// reply; it returns the exit code.
func send(ctx context.Context, cli *rpc.Client, c *config.Config, name string, target rpc.Target, payload any, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "%s %s: %v\n", config.ProgName, name, c.RPCError(err))
		return 1
	}
	first, second := c.Args[0], c.Args[1]
	switch name {
	case "call":
		reply, err := cli.Call(ctx, target, second, payload)
		var re *rpc.RemoteError
		if errors.As(err, &re) {
			fmt.Fprintf(stderr, "%s %s: remote %s: %s\n", config.ProgName, name, re.Class, re.Message)
			return 3
		}
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "%s\n", reply)
	case "cast":
		if err := cli.Cast(ctx, target, second, payload); err != nil {
			return fail(err)
		}
	case "fanout":
		if err := cli.Fanout(ctx, first, second, payload); err != nil {
			return fail(err)
		}
	case "notify":
		i := strings.LastIndex(first, ".")
		if err := cli.Notify(ctx, first[:i], first[i+1:], second, payload); err != nil {
			return fail(err)
		}
	}
	return 0
}
