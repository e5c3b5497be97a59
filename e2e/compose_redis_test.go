package e2e

import (
	"encoding/json"
	"maps"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
)

// The compose file's profile "redis" run for real, without a container
// runtime: a real redis-server, and the profile's command lines run by the
// binary, as compose would run them, with the names of the compose
// network made loopback addresses and the fixed ports free ones. The
// central proxy and the local one register in Redis, the echo server
// finds the proxy there, and the client's call is answered.
func TestComposeRedisProfileRuns(t *testing.T) {
	ours(t)
	cf := readComposeFile(t)
	r := testutil.StartRedis(t, testutil.RedisOptions{})
	redisService := ""
	for name, s := range cf.Services {
		if slices.Contains(s.Profiles, "redis") && len(s.Command) > 0 && s.Command[0] == "redis-server" {
			redisService = name
		}
	}
	if redisService == "" {
		t.Fatal("no redis-server in the profile redis")
	}
	// local rewrites a command line of the compose network for this host.
	local := func(args []string) []string {
		out := slices.Clone(args)
		for i := 0; i+1 < len(out); i++ {
			switch out[i] {
			case "-u":
				out[i+1] = strings.Replace(out[i+1], redisService+":6379", r.Addr(), 1)
			case "-H", "--name":
				out[i+1] = "127.0.0.1"
			case "-f", "-b", "-p":
				_, port, _ := net.SplitHostPort(freeAddr(t))
				out[i+1] = port
			case "--metrics-addr":
				out[i+1] = "127.0.0.1:0"
			}
		}
		return out
	}
	var central, node, echo, client []string
	for _, name := range slices.Sorted(maps.Keys(cf.Services)) {
		s := cf.Services[name]
		if !slices.Contains(s.Profiles, "redis") || !strings.HasPrefix(s.Image, proxyImage+":") {
			continue
		}
		switch {
		case s.Command[0] == "echo-server":
			echo = local(s.Command)
		case s.Command[0] == "call":
			client = local(s.Command)
		case slices.Contains(s.Command, "--local-publisher"):
			node = local(s.Command)
		default:
			central = local(s.Command)
		}
	}
	if central == nil || node == nil || echo == nil || client == nil {
		t.Fatalf("profile redis: central %q, local %q, echo %q, client %q; want each", central, node, echo, client)
	}
	p := startOurs(t, central...)
	p.waitLog(t, startTimeout, "registered in redis")
	startOurs(t, node...)
	runEcho(t, "of the profile redis", append(echo, "--timeout", "20s")...)
	out, errOut, code := runCmd(t, append(client, "--timeout", "20s")...)
	var reply map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &reply) != nil || reply["x"] != float64(1) {
		t.Fatalf("the profile's client: exit %d, stdout %q, stderr %q; want 0 and the echo of {\"x\":1}", code, out, errOut)
	}
}
