package config

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/zmq-proxy/zmq-proxy/actors"
)

// TestResolveRegistryOptions covers the registry's options: each flag and
// INI key, their defaults, and the environment.
func TestResolveRegistryOptions(t *testing.T) {
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		cmd      Command // 0 = CmdProxy
		args     []string
		ini      string
		env      map[string]string
		want     map[string]any    // config field -> value; "$INI" and "$TLS" replaced
		wantFrom map[string]string // option name -> source
	}{
		{
			name: "defaults",
			want: map[string]any{
				"Name": hostname, "EtcdAddr": "127.0.0.1:2379", "EtcdPrefix": "/zmq-proxy/",
				"EtcdUser": "", "EtcdPassword": "", "EtcdCACert": "", "EtcdCert": "", "EtcdKey": "",
				"TargetExpire": 5 * time.Second, "TargetUpdate": time.Duration(0),
			},
			wantFrom: map[string]string{
				"name": sourceDefault, "state_dir": sourceDefault, "etcd_addr": sourceDefault,
				"etcd_prefix": sourceDefault, "etcd_password": sourceDefault, "zmq_target_expire": sourceDefault,
			},
		},

		// --name, and -H kept apart from it.
		{name: "--name", args: []string{"--name", "proxy1.example.org"}, want: map[string]any{"Name": "proxy1.example.org"}, wantFrom: map[string]string{"name": "--name"}},
		{name: "INI name", ini: "[zmq_proxy_opts]\nname = proxy2\n", want: map[string]any{"Name": "proxy2"}, wantFrom: map[string]string{"name": iniPath}},
		{name: "--name overrides INI", args: []string{"--name", "a"}, ini: "[zmq_proxy_opts]\nname = b\n", want: map[string]any{"Name": "a"}},
		{
			name: "-H binds, --name registers", args: []string{"-H", "10.0.0.1", "--name", "node1"},
			want: map[string]any{"Host": "10.0.0.1", "Name": "node1"},
		},
		{name: "INI host is not the name", ini: "[zmq_proxy_opts]\nhost = 10.0.0.1\n", want: map[string]any{"Host": "10.0.0.1", "Name": hostname}},

		// The state directory: flag, file, and the defaults from the environment.
		{name: "--state-dir", args: []string{"--state-dir", "/srv/zmq"}, want: map[string]any{"StateDir": "/srv/zmq"}, wantFrom: map[string]string{"state_dir": "--state-dir"}},
		{name: "--state-dir relative is made absolute", args: []string{"--state-dir", "data"}, want: map[string]any{"StateDir": filepath.Join(cwd, "data")}},
		{name: "INI state_dir", ini: "[zmq_proxy_opts]\nstate_dir = /srv/ini\n", want: map[string]any{"StateDir": "/srv/ini"}, wantFrom: map[string]string{"state_dir": iniPath}},
		{
			name: "$STATE_DIRECTORY", env: map[string]string{"STATE_DIRECTORY": "/var/lib/zmq-proxy", "XDG_STATE_HOME": "/xdg"},
			want: map[string]any{"StateDir": "/var/lib/zmq-proxy"}, wantFrom: map[string]string{"state_dir": sourceDefault},
		},
		{name: "$STATE_DIRECTORY list: the first", env: map[string]string{"STATE_DIRECTORY": "/var/lib/a:/var/lib/b"}, want: map[string]any{"StateDir": "/var/lib/a"}},
		{name: "$XDG_STATE_HOME", env: map[string]string{"XDG_STATE_HOME": "/xdg/state"}, want: map[string]any{"StateDir": "/xdg/state/zmq-proxy"}},
		{name: "$XDG_STATE_HOME relative is ignored", env: map[string]string{"XDG_STATE_HOME": "state", "HOME": "/home/u"}, want: map[string]any{"StateDir": "/home/u/.local/state/zmq-proxy"}},
		{name: "$HOME", env: map[string]string{"HOME": "/home/u"}, want: map[string]any{"StateDir": "/home/u/.local/state/zmq-proxy"}},
		{
			name: "INI state_dir overrides $STATE_DIRECTORY", env: map[string]string{"STATE_DIRECTORY": "/var/lib/zmq-proxy"},
			ini: "[zmq_proxy_opts]\nstate_dir = /srv/ini\n", want: map[string]any{"StateDir": "/srv/ini"},
		},
		{
			name: "flag overrides INI state_dir", args: []string{"--state-dir=/srv/flag"},
			ini: "[zmq_proxy_opts]\nstate_dir = /srv/ini\n", want: map[string]any{"StateDir": "/srv/flag"},
		},
		{
			name: "no state directory is fine with a URL", env: map[string]string{"HOME": ""},
			args: []string{"-u", "zmq+etcd://e:2379/"}, want: map[string]any{"StateDir": ""},
		},
		{name: "no state directory is fine without a registry", env: map[string]string{"HOME": ""}, args: []string{"-u", "zmq://"}, want: map[string]any{"StateDir": ""}},

		// etcd's address and prefix.
		{name: "--etcd-addr", args: []string{"--etcd-addr", "127.0.0.1:12379"}, want: map[string]any{"EtcdAddr": "127.0.0.1:12379"}, wantFrom: map[string]string{"etcd_addr": "--etcd-addr"}},
		{name: "--etcd-addr IPv6", args: []string{"--etcd-addr", "[::1]:2379"}, want: map[string]any{"EtcdAddr": "[::1]:2379"}},
		{name: "INI etcd_addr", ini: "[zmq_proxy_opts]\netcd_addr = localhost:2379\n", want: map[string]any{"EtcdAddr": "localhost:2379"}, wantFrom: map[string]string{"etcd_addr": iniPath}},
		{name: "--etcd-prefix", args: []string{"--etcd-prefix", "/prod/zmq/"}, want: map[string]any{"EtcdPrefix": "/prod/zmq/"}, wantFrom: map[string]string{"etcd_prefix": "--etcd-prefix"}},
		{name: "--etcd-prefix root", args: []string{"--etcd-prefix", "/"}, want: map[string]any{"EtcdPrefix": "/"}},
		{name: "INI etcd_prefix", ini: "[zmq_proxy_opts]\netcd_prefix = /a/\n", want: map[string]any{"EtcdPrefix": "/a/"}, wantFrom: map[string]string{"etcd_prefix": iniPath}},

		// Authentication, and the password from the environment.
		{
			name: "--etcd-user and --etcd-password", args: []string{"--etcd-user", "proxy", "--etcd-password", "pw"},
			want:     map[string]any{"EtcdUser": "proxy", "EtcdPassword": "pw"},
			wantFrom: map[string]string{"etcd_user": "--etcd-user", "etcd_password": "--etcd-password"},
		},
		{
			name: "INI etcd_user and etcd_password", ini: "[zmq_proxy_opts]\netcd_user = proxy\netcd_password = pw\n",
			want:     map[string]any{"EtcdUser": "proxy", "EtcdPassword": "pw"},
			wantFrom: map[string]string{"etcd_user": iniPath, "etcd_password": iniPath},
		},
		{
			name: "password from the environment", args: []string{"--etcd-user", "proxy"},
			env:      map[string]string{envEtcdPassword: "envpw"},
			want:     map[string]any{"EtcdUser": "proxy", "EtcdPassword": "envpw"},
			wantFrom: map[string]string{"etcd_password": "$" + envEtcdPassword},
		},
		{
			name: "environment overrides INI password", env: map[string]string{envEtcdPassword: "envpw"},
			ini:  "[zmq_proxy_opts]\netcd_user = proxy\netcd_password = inipw\n",
			want: map[string]any{"EtcdPassword": "envpw"}, wantFrom: map[string]string{"etcd_password": "$" + envEtcdPassword},
		},
		{
			name: "flag overrides environment password", args: []string{"--etcd-user", "proxy", "--etcd-password", "flagpw"},
			env:  map[string]string{envEtcdPassword: "envpw"},
			want: map[string]any{"EtcdPassword": "flagpw"}, wantFrom: map[string]string{"etcd_password": "--etcd-password"},
		},
		{
			name: "empty environment password is none", env: map[string]string{envEtcdPassword: ""},
			ini:  "[zmq_proxy_opts]\netcd_user = proxy\netcd_password = inipw\n",
			want: map[string]any{"EtcdPassword": "inipw"},
		},

		// TLS.
		{
			name: "TLS flags", args: []string{"--etcd-cacert", "$TLS/ca.pem", "--etcd-cert", "$TLS/cert.pem", "--etcd-key", "$TLS/key.pem"},
			want:     map[string]any{"EtcdCACert": "$TLS/ca.pem", "EtcdCert": "$TLS/cert.pem", "EtcdKey": "$TLS/key.pem"},
			wantFrom: map[string]string{"etcd_cacert": "--etcd-cacert", "etcd_cert": "--etcd-cert", "etcd_key": "--etcd-key"},
		},
		{name: "CA alone", args: []string{"--etcd-cacert", "$TLS/ca.pem"}, want: map[string]any{"EtcdCACert": "$TLS/ca.pem", "EtcdCert": ""}},
		{
			name: "TLS in INI", ini: "[zmq_proxy_opts]\netcd_cacert = $TLS/ca.pem\netcd_cert = $TLS/cert.pem\netcd_key = $TLS/key.pem\n",
			want:     map[string]any{"EtcdCACert": "$TLS/ca.pem", "EtcdCert": "$TLS/cert.pem", "EtcdKey": "$TLS/key.pem"},
			wantFrom: map[string]string{"etcd_cacert": iniPath, "etcd_key": iniPath},
		},
		{
			name: "flag empties an INI certificate pair", args: []string{"--etcd-cert=", "--etcd-key="},
			ini:  "[zmq_proxy_opts]\netcd_cert = $TLS/cert.pem\netcd_key = $TLS/key.pem\n",
			want: map[string]any{"EtcdCert": "", "EtcdKey": ""},
		},

		// The lease TTL and the unused renewal period.
		{name: "--target-expire", args: []string{"--target-expire", "30"}, want: map[string]any{"TargetExpire": 30 * time.Second}, wantFrom: map[string]string{"zmq_target_expire": "--target-expire"}},
		{name: "--target-expire 1", args: []string{"--target-expire", "1"}, want: map[string]any{"TargetExpire": time.Second}},
		{
			name: "--target-expire overrides INI", args: []string{"--target-expire", "10"},
			ini: "[oslo_messaging_zmq]\nzmq_target_expire = 300\n", want: map[string]any{"TargetExpire": 10 * time.Second},
		},
		{
			name: "oslo.messaging's INI times accepted", ini: "[oslo_messaging_zmq]\nzmq_target_expire = 300\nzmq_target_update = 180\n",
			want: map[string]any{"TargetExpire": 300 * time.Second, "TargetUpdate": 180 * time.Second},
		},
		{name: "INI update below the default expiry", ini: "[oslo_messaging_zmq]\nzmq_target_update = 2\n", want: map[string]any{"TargetUpdate": 2 * time.Second}},

		// zmq-proxy list.
		{
			name: "list defaults", cmd: CmdList,
			want: map[string]any{"Watch": false, "JSON": false, "ListTimeout": 5 * time.Second, "EtcdAddr": "127.0.0.1:2379", "EtcdPrefix": "/zmq-proxy/"},
		},
		{name: "list -w", cmd: CmdList, args: []string{"-w"}, want: map[string]any{"Watch": true}, wantFrom: map[string]string{"watch": "-w"}},
		{name: "list --watch --json", cmd: CmdList, args: []string{"--watch", "--json"}, want: map[string]any{"Watch": true, "JSON": true}},
		{name: "list --timeout duration", cmd: CmdList, args: []string{"--timeout", "1m30s"}, want: map[string]any{"ListTimeout": 90 * time.Second}},
		{name: "list --timeout seconds", cmd: CmdList, args: []string{"--timeout", "2"}, want: map[string]any{"ListTimeout": 2 * time.Second}},
		{
			name: "list registry flags", cmd: CmdList,
			args: []string{"-u", "zmq+etcd://e1:2379/", "--etcd-prefix", "/p/", "--etcd-user", "u", "--etcd-cacert", "$TLS/ca.pem"},
			env:  map[string]string{envEtcdPassword: "envpw"},
			want: map[string]any{
				"Registry":   RegistryURL{Mode: RegistryEtcd, Endpoints: []string{"e1:2379"}},
				"EtcdPrefix": "/p/", "EtcdUser": "u", "EtcdPassword": "envpw", "EtcdCACert": "$TLS/ca.pem",
			},
		},
		{
			name: "list reads the registry keys of the proxy's file and no other", cmd: CmdList,
			ini:  "[zmq_proxy_opts]\nurl = zmq+etcd://e1:2379/\netcd_prefix = /p/\nfrontend_port = not a port\n",
			want: map[string]any{"Registry": RegistryURL{Mode: RegistryEtcd, Endpoints: []string{"e1:2379"}}, "EtcdPrefix": "/p/"},
		},
		{name: "list needs no state directory", cmd: CmdList, env: map[string]string{"HOME": ""}, want: map[string]any{"StateDir": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, r, err := resolveIn(t, tt.cmd, tt.env, tt.args, tt.ini)
			if err != nil {
				t.Fatalf("resolve: got error %q, want none", err)
			}
			checkConfig(t, c, r, tt.want, tt.wantFrom)
		})
	}
}

func TestResolveRegistryErrors(t *testing.T) {
	tests := []struct {
		name    string
		cmd     Command // 0 = CmdProxy
		args    []string
		ini     string
		env     map[string]string
		wantErr string // a part of the error; "$INI" and "$TLS" replaced
	}{
		{name: "empty name", args: []string{"--name", ""}, wantErr: `--name: "" is not a host name (one word, without "/")`},
		{name: "name with a slash", args: []string{"--name", "a/b"}, wantErr: `--name: "a/b" is not a host name`},
		{name: "name with a space in INI", ini: "[zmq_proxy_opts]\nname = a b\n", wantErr: `$INI: [zmq_proxy_opts] name = a b: not a host name`},

		{
			name: "no state directory for an embedded etcd", env: map[string]string{"HOME": ""},
			wantErr: `no state directory for the embedded etcd: none of $STATE_DIRECTORY, $XDG_STATE_HOME, $HOME is set; give --state-dir or -u`,
		},
		{name: "empty --state-dir", args: []string{"--state-dir", ""}, wantErr: `--state-dir: "" is not a directory; the embedded etcd needs one`},

		{name: "etcd-addr without port", args: []string{"--etcd-addr", "localhost"}, wantErr: `--etcd-addr: "localhost" is not host:port`},
		{name: "etcd-addr without host", args: []string{"--etcd-addr", ":2379"}, wantErr: `--etcd-addr: ":2379" is not host:port`},
		{name: "etcd-addr port 0", args: []string{"--etcd-addr", "127.0.0.1:0"}, wantErr: `--etcd-addr: "127.0.0.1:0" is not host:port with a port in 1..65535`},
		{name: "bad etcd_addr in INI", ini: "[zmq_proxy_opts]\netcd_addr = x\n", wantErr: `$INI: [zmq_proxy_opts] etcd_addr = x: not host:port`},

		{name: "prefix without slashes", args: []string{"--etcd-prefix", "zmq"}, wantErr: `--etcd-prefix: "zmq" is not a key prefix that starts and ends with "/"`},
		{name: "prefix without trailing slash", args: []string{"--etcd-prefix", "/zmq"}, wantErr: `--etcd-prefix: "/zmq" is not a key prefix`},
		{name: "prefix without leading slash", ini: "[zmq_proxy_opts]\netcd_prefix = zmq/\n", wantErr: `$INI: [zmq_proxy_opts] etcd_prefix = zmq/: not a key prefix that starts and ends with "/"`},
		{name: "empty prefix", args: []string{"--etcd-prefix="}, wantErr: `--etcd-prefix: "" is not a key prefix`},

		{
			name: "user without password", args: []string{"--etcd-user", "proxy"},
			wantErr: `--etcd-user: "proxy" is not usable without etcd_password: give --etcd-password, etcd_password in the file, or $ZMQ_PROXY_ETCD_PASSWORD`,
		},
		{
			name: "password without user", args: []string{"--etcd-password", "secret"},
			wantErr: `--etcd-password: "(hidden)" is not usable without etcd_user: give --etcd-user or etcd_user in the file`,
		},
		{
			name: "environment password without user", env: map[string]string{envEtcdPassword: "secret"},
			wantErr: `$ZMQ_PROXY_ETCD_PASSWORD: "(hidden)" is not usable without etcd_user`,
		},
		{
			name: "INI user without password", ini: "[zmq_proxy_opts]\netcd_user = proxy\n",
			wantErr: `$INI: [zmq_proxy_opts] etcd_user = proxy: not usable without etcd_password`,
		},

		{
			name: "nonexistent CA file", args: []string{"--etcd-cacert", "/nonexistent/ca.pem"},
			wantErr: `--etcd-cacert: "/nonexistent/ca.pem" is not a readable file: no such file or directory`,
		},
		{
			name: "nonexistent CA file in INI", ini: "[zmq_proxy_opts]\netcd_cacert = /nonexistent/ca.pem\n",
			wantErr: `$INI: [zmq_proxy_opts] etcd_cacert = /nonexistent/ca.pem: not a readable file: no such file or directory`,
		},
		{name: "CA is a directory", args: []string{"--etcd-cacert", "$TLS"}, wantErr: `--etcd-cacert: "$TLS" is not a readable file: a directory`},
		{name: "nonexistent cert", args: []string{"--etcd-cert", "/nonexistent/c.pem", "--etcd-key", "$TLS/key.pem"}, wantErr: `--etcd-cert: "/nonexistent/c.pem" is not a readable file`},
		{name: "nonexistent key", args: []string{"--etcd-cert", "$TLS/cert.pem", "--etcd-key", "/nonexistent/k.pem"}, wantErr: `--etcd-key: "/nonexistent/k.pem" is not a readable file`},
		{
			name: "cert without key", args: []string{"--etcd-cert", "$TLS/cert.pem"},
			wantErr: `--etcd-cert: "$TLS/cert.pem" is not usable without etcd_key: give --etcd-key or etcd_key in the file`,
		},
		{
			name: "key without cert", ini: "[zmq_proxy_opts]\netcd_key = $TLS/key.pem\n",
			wantErr: `$INI: [zmq_proxy_opts] etcd_key = $TLS/key.pem: not usable without etcd_cert: give --etcd-cert or etcd_cert in the file`,
		},
		{
			name: "flag empties the key of an INI pair", args: []string{"--etcd-key="},
			ini:     "[zmq_proxy_opts]\netcd_cert = $TLS/cert.pem\netcd_key = $TLS/key.pem\n",
			wantErr: `$INI: [zmq_proxy_opts] etcd_cert = $TLS/cert.pem: not usable without etcd_key`,
		},

		{name: "expire 0", args: []string{"--target-expire", "0"}, wantErr: `--target-expire: "0" is not at least 1 second`},
		{name: "expire negative", args: []string{"--target-expire", "-1"}, wantErr: `--target-expire: "-1" is not at least 1 second`},
		{name: "expire not a number", args: []string{"--target-expire", "5s"}, wantErr: `--target-expire: "5s" is not an integer number of seconds`},
		{name: "expire 0 in INI", ini: "[oslo_messaging_zmq]\nzmq_target_expire = 0\n", wantErr: `$INI: [oslo_messaging_zmq] zmq_target_expire = 0: not at least 1 second`},
		{name: "oslo.messaging's no-expiry -1 in INI", ini: "[oslo_messaging_zmq]\nzmq_target_expire = -1\n", wantErr: `zmq_target_expire = -1: not at least 1 second`},
		{
			name: "update not less than the default expiry", ini: "[oslo_messaging_zmq]\nzmq_target_update = 5\n",
			wantErr: `$INI: [oslo_messaging_zmq] zmq_target_update = 5: not less than zmq_target_expire (5, default)`,
		},
		{
			name: "update and expiry equal in INI", ini: "[oslo_messaging_zmq]\nzmq_target_expire = 60\nzmq_target_update = 60\n",
			wantErr: `$INI: [oslo_messaging_zmq] zmq_target_update = 60: not less than zmq_target_expire (60, from $INI)`,
		},
		{
			name: "flag expiry below INI update", args: []string{"--target-expire", "3"},
			ini:     "[oslo_messaging_zmq]\nzmq_target_update = 10\n",
			wantErr: `--target-expire: "3" is not greater than zmq_target_update (10, from $INI)`,
		},

		// Each command takes its own flags.
		{name: "proxy has no --watch", args: []string{"--watch"}, wantErr: `flag provided but not defined: -watch`},
		{name: "list has no -f", cmd: CmdList, args: []string{"-f", "1"}, wantErr: `flag provided but not defined: -f`},
		{name: "list has no --target-expire", cmd: CmdList, args: []string{"--target-expire", "5"}, wantErr: `flag provided but not defined: -target-expire`},
		{name: "list bad timeout", cmd: CmdList, args: []string{"--timeout", "soon"}, wantErr: `--timeout: "soon" is not a duration (5s, 1m, or a number of seconds)`},
		{name: "list zero timeout", cmd: CmdList, args: []string{"--timeout", "0s"}, wantErr: `--timeout: "0s" is not a positive duration`},
		{name: "list bad prefix", cmd: CmdList, args: []string{"--etcd-prefix", "x"}, wantErr: `--etcd-prefix: "x" is not a key prefix`},
		{name: "list cert without key", cmd: CmdList, args: []string{"--etcd-cert", "$TLS/cert.pem"}, wantErr: `is not usable without etcd_key`},
		{name: "list bad url in INI", cmd: CmdList, ini: "[zmq_proxy_opts]\nurl = redis://r/\n", wantErr: `$INI: [zmq_proxy_opts] url = redis://r/: not a registry URL`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, r, err := resolveIn(t, tt.cmd, tt.env, tt.args, tt.ini)
			checkError(t, err, r, tt.wantErr)
		})
	}
}

// TestRegistryConfig checks the mapping of the URL and the registry options
// to the library's actors.RegistryConfig.
func TestRegistryConfig(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want actors.RegistryConfig
	}{
		{
			name: "no URL: the local etcd, embedded if need be",
			args: []string{"--name", "n1"},
			env:  map[string]string{"STATE_DIRECTORY": "/var/lib/zmq-proxy"},
			want: actors.RegistryConfig{
				EmbeddedAddr: "127.0.0.1:2379", StateDir: "/var/lib/zmq-proxy", Prefix: "/zmq-proxy/",
				TTL: 5 * time.Second, Name: "n1",
			},
		},
		{
			name: "zmq+etcd URL: the cluster",
			args: []string{"-u", "zmq+etcd://h1:2379,h2:2380/", "--name", "n1", "--state-dir", "/s"},
			want: actors.RegistryConfig{
				Endpoints:    []string{"h1:2379", "h2:2380"},
				EmbeddedAddr: "127.0.0.1:2379", StateDir: "/s", Prefix: "/zmq-proxy/", TTL: 5 * time.Second, Name: "n1",
			},
		},
		{
			name: "zmq URL: no registry",
			args: []string{"-u", "zmq://127.0.0.1:6379/", "--name", "n1", "--state-dir", "/s"},
			want: actors.RegistryConfig{
				Disabled: true, EmbeddedAddr: "127.0.0.1:2379", StateDir: "/s", Prefix: "/zmq-proxy/", TTL: 5 * time.Second, Name: "n1",
			},
		},
		{
			name: "every option",
			args: []string{
				"-u", "zmq+etcd://[::1]:2379/", "--name", "n2", "--state-dir", "/s", "--etcd-addr", "127.0.0.1:3379",
				"--etcd-prefix", "/p/", "--etcd-user", "u", "--etcd-cacert", "$TLS/ca.pem",
				"--etcd-cert", "$TLS/cert.pem", "--etcd-key", "$TLS/key.pem", "--target-expire", "7",
			},
			env: map[string]string{envEtcdPassword: "pw"},
			want: actors.RegistryConfig{
				Endpoints: []string{"[::1]:2379"}, EmbeddedAddr: "127.0.0.1:3379", StateDir: "/s", Prefix: "/p/",
				TTL: 7 * time.Second, Username: "u", Password: "pw",
				CACert: "$TLS/ca.pem", Cert: "$TLS/cert.pem", Key: "$TLS/key.pem", Name: "n2",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hermeticEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			c, r, err := resolveWithINI(t, tt.args, "")
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			want.CACert, want.Cert, want.Key = r.Replace(want.CACert), r.Replace(want.Cert), r.Replace(want.Key)
			got := c.ProxyConfig(slog.New(slog.DiscardHandler)).Registry
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Registry:\ngot  %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestPasswordNotLogged: the debug log of the configuration names the
// password's source, not its value.
func TestPasswordNotLogged(t *testing.T) {
	hermeticEnv(t)
	t.Setenv(envEtcdPassword, "s3cret-pw")
	for _, cmd := range []Command{CmdProxy, CmdList} {
		c, err := Resolve(cmd, []string{"--etcd-user", "proxy"})
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		c.Log(slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug})))
		if strings.Contains(b.String(), "s3cret") {
			t.Errorf("command %d: the log shows the password:\n%s", cmd, b.String())
		}
		if want := `msg=option name=etcd_password value=(hidden) source=$ZMQ_PROXY_ETCD_PASSWORD`; !strings.Contains(b.String(), want) {
			t.Errorf("command %d: log: got\n%s\nwant a line with %q", cmd, b.String(), want)
		}
		if want := `order="default < config file < environment < flag"`; !strings.Contains(b.String(), want) {
			t.Errorf("command %d: log: got\n%s\nwant a line with %q", cmd, b.String(), want)
		}
	}
}

// TestUsageRegistry: the usage text says what the registry options need
// said: the precedence of the environment, -H against --name, and that
// zmq_target_update rewrites Redis records.
func TestUsageRegistry(t *testing.T) {
	var proxy, list bytes.Buffer
	PrintUsage(&proxy, CmdProxy)
	PrintUsage(&list, CmdList)
	for _, tt := range []struct {
		usage *bytes.Buffer
		want  string
	}{
		{&proxy, "--etcd-password PASSWORD"},
		{&proxy, "$ZMQ_PROXY_ETCD_PASSWORD"},
		{&proxy, "a flag overrides the environment"},
		{&proxy, "-H/--host (host in the file) is the address the proxy binds; --name (name) is\nthe host name it registers under"},
		{&proxy, "With Redis, the records are rewritten every\n  zmq_target_update"},
		{&proxy, "--target-expire SECONDS"},
		{&proxy, "(default 5)"},
		{&proxy, "(default $STATE_DIRECTORY, else $XDG_STATE_HOME/zmq-proxy, else ~/.local/state/zmq-proxy)"},
		{&proxy, "zmq-proxy COMMAND [options]"},
		{&list, "Usage: zmq-proxy list [options]"},
		{&list, "-w, --watch"},
		{&list, "--timeout DURATION"},
		{&list, "it never starts one"},
		{&list, "$ZMQ_PROXY_ETCD_PASSWORD"},
		{&list, "  TIME + ID KIND FRONTEND BACKEND PUBLISHER"},
		{&list, `{"time":...,"event":"put"|"delete","record":{...}}`},
	} {
		if !strings.Contains(tt.usage.String(), tt.want) {
			t.Errorf("usage: got\n%s\nwant it to contain %q", tt.usage, tt.want)
		}
	}
}

// resolveIn is resolveCmdWithINI for cmd (CmdProxy when 0) in a hermetic
// environment with env set.
func resolveIn(t *testing.T, cmd Command, env map[string]string, args []string, ini string) (*Config, *strings.Replacer, error) {
	t.Helper()
	hermeticEnv(t)
	for k, v := range env {
		t.Setenv(k, v)
	}
	if cmd == 0 {
		cmd = CmdProxy
	}
	return resolveCmdWithINI(t, cmd, args, ini)
}
