package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
)

// --check-config validates and exits: 0 and one line on stdout for a good
// configuration, 2 and one line on stderr for a bad one.
func TestCheckConfig(t *testing.T) {
	hermeticEnv(t)
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	ini := filepath.Join(dir, "proxy.ini")
	if err := os.WriteFile(ini, []byte("[zmq_proxy_opts]\nfrontend_port = 50001\nbackend_port = 50002\n"+
		"[oslo_messaging_zmq]\nzmq_target_expire = 5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badINI := filepath.Join(dir, "bad.ini")
	if err := os.WriteFile(badINI, []byte("[zmq_proxy_opts]\nhwm = lots\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	samePorts := write("same.ini", "[zmq_proxy_opts]\nfrontend_port = 50001\nbackend_port = 50001\n")
	misspelt := write("misspelt.ini", "[zmq_proxy_opts]\nfrontend_prot = 50001\n")
	sentinel := write("sentinel.ini", "[DEFAULT]\ntransport_url = zmq+redis://\n[matchmaker_redis]\nsentinel_hosts = 10.0.0.1:26379, 10.0.0.2:26379\n")
	sentinelEtcd := write("sentinel-etcd.ini", "[matchmaker_redis]\nsentinel_hosts = 10.0.0.1:26379\n")
	otherSection := write("other.ini", "[oslo_messaging_zmq]\nrpc_zmq_matchmaker = redis\n[zmq_proxy_opts]\nfrontend_port = 50001\nbackend_port = 50002\n")
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string // the whole of stdout
		wantStderr string // the whole of stderr
	}{
		{
			name:       "embedded etcd",
			args:       []string{"--check-config", "-H", "127.0.0.1", "--state-dir", stateDir},
			wantStdout: "zmq-proxy: configuration OK: kind=double-router host=127.0.0.1 frontend_port=0 backend_port=0 publisher_port=0 drain_timeout=5s registry=\"embedded etcd\" etcd_addr=127.0.0.1:2379 state_dir=" + stateDir + "\n",
		},
		{
			name:       "file and flags",
			args:       []string{"-c", ini, "--check-config", "-u", "zmq+etcd://e1:2379,e2:2379/", "--metrics-addr", ":9464"},
			wantStdout: "zmq-proxy: configuration OK: kind=double-router host=* frontend_port=50001 backend_port=50002 publisher_port=0 drain_timeout=5s registry=\"etcd e1:2379,e2:2379\" metrics_addr=:9464\n",
		},
		{
			name:       "single router",
			args:       []string{"--check-config", "-f", "50001", "-p", "50003", "-u", "zmq://"},
			wantStdout: "zmq-proxy: configuration OK: kind=single-router host=* frontend_port=50001 publisher_port=50003 drain_timeout=5s registry=\"none\"\n",
		},
		{
			name:       "local publisher",
			args:       []string{"--check-config", "-lp", "-p", "50010", "-u", "zmq+etcd://e1:2379/"},
			wantStdout: "zmq-proxy: configuration OK: kind=local host=* publisher_port=50010 registry=\"etcd e1:2379\"\n",
		},
		{
			name:     "bad flag",
			args:     []string{"--check-config", "-f", "70000"},
			wantCode: 2, wantStderr: "zmq-proxy: -f: \"70000\" is not in 0..65535\n",
		},
		{
			name:     "bad file",
			args:     []string{"--check-config", "-c", badINI},
			wantCode: 2, wantStderr: "zmq-proxy: " + badINI + ": [zmq_proxy_opts] hwm = lots: not an integer\n",
		},
		{
			name:     "same port twice in the file",
			args:     []string{"--check-config", "-u", "zmq://", "-c", samePorts},
			wantCode: 2, wantStderr: "zmq-proxy: " + samePorts + ": [zmq_proxy_opts] backend_port = 50001: the port of frontend_port too (50001, from " + samePorts + "): every socket needs a port of its own\n",
		},
		{
			name:     "a flag takes the file's port",
			args:     []string{"--check-config", "-u", "zmq://", "-c", ini, "-p", "50002"},
			wantCode: 2, wantStderr: "zmq-proxy: -p: \"50002\" is the port of backend_port too (50002, from " + ini + "): every socket needs a port of its own\n",
		},
		{
			name:     "metrics on the frontend's port",
			args:     []string{"--check-config", "-u", "zmq://", "-H", "127.0.0.1", "-f", "50001", "-b", "50002", "--metrics-addr", "0.0.0.0:50001"},
			wantCode: 2, wantStderr: "zmq-proxy: --metrics-addr: \"0.0.0.0:50001\" is the port of frontend_port too (50001, from -f): every socket needs a port of its own\n",
		},
		{
			name:     "admin on the metrics port",
			args:     []string{"--check-config", "-u", "zmq://", "--metrics-addr", "127.0.0.1:9464", "--admin-addr", ":9464"},
			wantCode: 2, wantStderr: "zmq-proxy: --admin-addr: \":9464\" is the port of metrics_addr too (127.0.0.1:9464, from --metrics-addr): every socket needs a port of its own\n",
		},
		{
			name:     "publisher on the embedded etcd's port",
			args:     []string{"--check-config", "-p", "2379", "--state-dir", stateDir},
			wantCode: 2, wantStderr: "zmq-proxy: -p: \"2379\" is the port of etcd_addr too (127.0.0.1:2379, default): every socket needs a port of its own\n",
		},
		{
			name:       "metrics and admin on one port of different addresses",
			args:       []string{"--check-config", "-u", "zmq://", "--metrics-addr", "10.0.0.1:9464", "--admin-addr", "127.0.0.1:9464"},
			wantStdout: "zmq-proxy: configuration OK: kind=double-router host=* frontend_port=0 backend_port=0 publisher_port=0 drain_timeout=5s registry=\"none\" metrics_addr=10.0.0.1:9464\n",
		},
		{
			name:       "router-only binds no publisher",
			args:       []string{"--check-config", "-u", "zmq://", "-f", "50001", "-b", "50002", "-p", "50001", "--use-pub-sub=false"},
			wantStdout: "zmq-proxy: configuration OK: kind=double-router host=* frontend_port=50001 backend_port=50002 publisher_port=50001 drain_timeout=5s registry=\"none\"\n",
		},
		{
			name:     "misspelt key in the proxy's section",
			args:     []string{"--check-config", "-u", "zmq://", "-c", misspelt},
			wantCode: 2, wantStderr: "zmq-proxy: -c " + misspelt + ": [zmq_proxy_opts] frontend_prot: not an option of zmq-proxy (did you mean frontend_port?); zmq-proxy -h lists the keys of each section\n",
		},
		{
			name:       "unknown keys of oslo.messaging's sections are the services'",
			args:       []string{"--check-config", "-u", "zmq://", "-c", otherSection},
			wantStdout: "zmq-proxy: configuration OK: kind=double-router host=* frontend_port=50001 backend_port=50002 publisher_port=0 drain_timeout=5s registry=\"none\"\n",
		},
		{
			name:     "Redis Sentinel",
			args:     []string{"--check-config", "-c", sentinel},
			wantCode: 2, wantStderr: "zmq-proxy: " + sentinel + ": [matchmaker_redis] sentinel_hosts = 10.0.0.1:26379, 10.0.0.2:26379: Redis Sentinel is not supported: zmq-proxy talks to one Redis server; give its address as [matchmaker_redis] host and port, or in the URL (docs/deploy.md, \"Redis\")\n",
		},
		{
			name:       "Sentinel hosts of a file whose registry is etcd",
			args:       []string{"--check-config", "-c", sentinelEtcd, "-u", "zmq+etcd://e1:2379/"},
			wantStdout: "zmq-proxy: configuration OK: kind=double-router host=* frontend_port=0 backend_port=0 publisher_port=0 drain_timeout=5s registry=\"etcd e1:2379\"\n",
		},
		{
			name:     "what only the library checks",
			args:     []string{"--check-config", "-lp", "-u", "zmq://"},
			wantCode: 2, wantStderr: "zmq-proxy: invalid configuration: a local publisher proxy needs subscribe_on or a registry to find the central publishers\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if got := run(tt.args, &stdout, &stderr); got != tt.wantCode {
				t.Errorf("exit code: got %d, want %d (stderr %q)", got, tt.wantCode, stderr.String())
			}
			if got := stdout.String(); got != tt.wantStdout {
				t.Errorf("stdout: got %q\nwant %q", got, tt.wantStdout)
			}
			if got := stderr.String(); got != tt.wantStderr {
				t.Errorf("stderr: got %q\nwant %q", got, tt.wantStderr)
			}
		})
	}
	if _, err := os.Stat(stateDir); !os.IsNotExist(err) {
		t.Errorf("state dir after --check-config: %v, want it not created (no embedded etcd)", err)
	}
}

// --check-config binds nothing: ports that are taken, which the proxy
// could not bind, do not make it fail.
func TestCheckConfigBindsNothing(t *testing.T) {
	hermeticEnv(t)
	var ports []string
	for range 5 {
		ln := testutil.Taken(t)
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		ports = append(ports, port)
	}
	args := []string{"--check-config", "-H", "127.0.0.1", "-f", ports[0], "-b", ports[1], "-p", ports[2],
		"--metrics-addr", "127.0.0.1:" + ports[3], "--etcd-addr", "127.0.0.1:" + ports[4], "--state-dir", t.TempDir()}
	var stdout, stderr bytes.Buffer
	if code := run(args, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "configuration OK") {
		t.Errorf("got exit code %d, stdout %q, stderr %q; want 0 and \"configuration OK\"", code, stdout.String(), stderr.String())
	}
}
