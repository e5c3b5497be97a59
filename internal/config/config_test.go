package config

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zmq-proxy/zmq-proxy/actors"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// iniPath stands, in a test's args, wantFrom and wantErr, for the path of
// the INI file the test writes.
const iniPath = "$INI"

// tlsDir stands, in a test's args, INI file, want and wantErr, for a
// directory that holds three readable files: ca.pem, cert.pem and key.pem.
const tlsDir = "$TLS"

// resolveWithINI writes ini, when not empty, to a file and passes it with -c
// before args; "$INI" in args is replaced by the file's path. It returns the
// path of the INI file and a replacer of "$INI" and "$TLS".
// mustResolve is resolveWithINI that fails the test on an error.
func mustResolve(t *testing.T, args []string, ini string) (*Config, *strings.Replacer) {
	t.Helper()
	c, r, err := resolveWithINI(t, args, ini)
	if err != nil {
		t.Fatalf("resolve: got error %q, want none", err)
	}
	return c, r
}

func resolveWithINI(t *testing.T, args []string, ini string) (*Config, *strings.Replacer, error) {
	t.Helper()
	return resolveCmdWithINI(t, CmdProxy, args, ini)
}

// resolveCmdWithINI is resolveWithINI for cmd.
func resolveCmdWithINI(t *testing.T, cmd Command, args []string, ini string) (*Config, *strings.Replacer, error) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "proxy.ini")
	tls := filepath.Join(dir, "tls")
	if err := os.Mkdir(tls, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ca.pem", "cert.pem", "key.pem"} {
		if err := os.WriteFile(filepath.Join(tls, f), []byte("PEM"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r := strings.NewReplacer(iniPath, path, tlsDir, tls)
	if ini != "" {
		if err := os.WriteFile(path, []byte(r.Replace(ini)), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append([]string{"-c", path}, args...)
	}
	args = append([]string(nil), args...)
	for i, a := range args {
		args[i] = r.Replace(a)
	}
	c, err := Resolve(cmd, args)
	return c, r, err
}

// hermeticEnv empties the environment variables that make defaults or
// override the file, so that a test does not depend on who runs it. HOME
// is a temporary directory: the state directory defaults to one in it.
func hermeticEnv(t *testing.T) (home string) {
	t.Helper()
	home = t.TempDir()
	for _, v := range []string{"STATE_DIRECTORY", "XDG_STATE_HOME", envEtcdPassword, "GOMAXPROCS", "NODE_NAME"} {
		t.Setenv(v, "")
	}
	t.Setenv("HOME", home)
	return home
}

// checkConfig compares fields of c with want, and the sources of options
// with wantFrom; r replaces "$INI" and "$TLS" in wanted strings.
func checkConfig(t *testing.T, c *Config, r *strings.Replacer, want map[string]any, wantFrom map[string]string) {
	t.Helper()
	v := reflect.ValueOf(c).Elem()
	for field, want := range want {
		f := v.FieldByName(field)
		if !f.IsValid() {
			t.Fatalf("config has no field %s", field)
		}
		if s, ok := want.(string); ok {
			want = r.Replace(s)
		}
		if got := f.Interface(); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %#v, want %#v", field, got, want)
		}
	}
	for name, want := range wantFrom {
		want = r.Replace(want)
		if got := c.settings[name].from; got != want {
			t.Errorf("source of %s: got %q, want %q", name, got, want)
		}
	}
}

func TestResolveConfig(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		ini      string
		want     map[string]any    // config field -> value
		wantFrom map[string]string // option name -> source
	}{
		{
			name: "defaults",
			want: map[string]any{
				"ConfigFile": "", "LogFile": "", "Debug": false, "Host": "",
				"FrontendPort": 0, "BackendPort": 0, "PublisherPort": 0,
				"LocalPublisher": false, "AckPubSub": false, "URL": "",
				"Registry": RegistryURL{Mode: RegistryEmbedded},
				"HWM":      actors.DefaultHWM, "MaxMessageSize": int64(actors.DefaultMaxMessageSize),
				"MetricsAddr": "", "SubscribeOn": []string(nil),
				"TargetExpire": 5 * time.Second, "TargetUpdate": time.Duration(0),
				"Kind": actors.KindDoubleRouter,
			},
			wantFrom: map[string]string{"frontend_port": sourceDefault, "url": sourceDefault},
		},

		// Every flag, short and long.
		{name: "-l", args: []string{"-l", "/tmp/x.log"}, want: map[string]any{"LogFile": "/tmp/x.log"}, wantFrom: map[string]string{"log_file": "-l"}},
		{name: "--log-file", args: []string{"--log-file", "/tmp/x.log"}, want: map[string]any{"LogFile": "/tmp/x.log"}, wantFrom: map[string]string{"log_file": "--log-file"}},
		{name: "-H", args: []string{"-H", "10.0.0.1"}, want: map[string]any{"Host": "10.0.0.1"}, wantFrom: map[string]string{"host": "-H"}},
		{name: "--host", args: []string{"--host=proxy1.example.org"}, want: map[string]any{"Host": "proxy1.example.org"}, wantFrom: map[string]string{"host": "--host"}},
		{name: "-f", args: []string{"-f", "5000"}, want: map[string]any{"FrontendPort": 5000}, wantFrom: map[string]string{"frontend_port": "-f"}},
		{name: "--frontend-port", args: []string{"--frontend-port", "5000"}, want: map[string]any{"FrontendPort": 5000}, wantFrom: map[string]string{"frontend_port": "--frontend-port"}},
		{name: "-b", args: []string{"-b", "5001"}, want: map[string]any{"BackendPort": 5001}, wantFrom: map[string]string{"backend_port": "-b"}},
		{name: "--backend-port", args: []string{"--backend-port", "5001"}, want: map[string]any{"BackendPort": 5001}, wantFrom: map[string]string{"backend_port": "--backend-port"}},
		{name: "-p", args: []string{"-p", "5002"}, want: map[string]any{"PublisherPort": 5002}, wantFrom: map[string]string{"publisher_port": "-p"}},
		{name: "--publisher-port", args: []string{"--publisher-port", "5002"}, want: map[string]any{"PublisherPort": 5002}, wantFrom: map[string]string{"publisher_port": "--publisher-port"}},
		{name: "-lp", args: []string{"-lp"}, want: map[string]any{"LocalPublisher": true, "Kind": actors.KindLocalPublisher}, wantFrom: map[string]string{"local_publisher": "-lp"}},
		{name: "--local-publisher", args: []string{"--local-publisher"}, want: map[string]any{"LocalPublisher": true, "Kind": actors.KindLocalPublisher}, wantFrom: map[string]string{"local_publisher": "--local-publisher"}},
		{name: "-a", args: []string{"-a"}, want: map[string]any{"AckPubSub": true}, wantFrom: map[string]string{"ack_pub_sub": "-a"}},
		{name: "--ack-pub-sub", args: []string{"--ack-pub-sub"}, want: map[string]any{"AckPubSub": true}, wantFrom: map[string]string{"ack_pub_sub": "--ack-pub-sub"}},
		{name: "-a=yes", args: []string{"-a=yes"}, want: map[string]any{"AckPubSub": true}},
		{
			name: "-u", args: []string{"-u", "zmq+etcd://h1:2379,h2:2379/"},
			want: map[string]any{
				"URL":      "zmq+etcd://h1:2379,h2:2379/",
				"Registry": RegistryURL{Mode: RegistryEtcd, Endpoints: []string{"h1:2379", "h2:2379"}},
			},
			wantFrom: map[string]string{"url": "-u"},
		},
		{
			name: "--url", args: []string{"--url", "zmq+etcd://[::1]:2379"},
			want:     map[string]any{"Registry": RegistryURL{Mode: RegistryEtcd, Endpoints: []string{"[::1]:2379"}}},
			wantFrom: map[string]string{"url": "--url"},
		},
		{name: "zmq url means no registry", args: []string{"-u", "zmq://127.0.0.1:6379/"}, want: map[string]any{"Registry": RegistryURL{Mode: RegistryNone}}},
		{name: "-d", args: []string{"-d"}, want: map[string]any{"Debug": true}, wantFrom: map[string]string{"debug": "-d"}},
		{name: "--debug", args: []string{"--debug"}, want: map[string]any{"Debug": true}, wantFrom: map[string]string{"debug": "--debug"}},
		{name: "-d=false", args: []string{"-d=false"}, want: map[string]any{"Debug": false}, wantFrom: map[string]string{"debug": "-d"}},
		{name: "--hwm", args: []string{"--hwm", "50"}, want: map[string]any{"HWM": 50}, wantFrom: map[string]string{"hwm": "--hwm"}},
		{name: "--max-message-size", args: []string{"--max-message-size", "1024"}, want: map[string]any{"MaxMessageSize": int64(1024)}},
		{name: "--hwm-bytes", args: []string{"--hwm-bytes", "4096"}, want: map[string]any{"HWMBytes": int64(4096)}, wantFrom: map[string]string{"hwm_bytes": "--hwm-bytes"}},
		{name: "--max-connections", args: []string{"--max-connections", "7"}, want: map[string]any{"MaxConnections": 7}, wantFrom: map[string]string{"max_connections": "--max-connections"}},
		{name: "--max-handshakes", args: []string{"--max-handshakes", "9", "--max-handshakes-per-source", "3"}, want: map[string]any{"MaxHandshakes": 9, "MaxHsPerSource": 3}},
		{name: "--max-frames", args: []string{"--max-frames", "64"}, want: map[string]any{"MaxFrames": 64}, wantFrom: map[string]string{"max_frames": "--max-frames"}},
		{name: "INI max_frames", ini: "[zmq_proxy_opts]\nmax_frames = 32\n", want: map[string]any{"MaxFrames": 32}, wantFrom: map[string]string{"max_frames": iniPath}},
		{name: "threads by default", want: map[string]any{"Threads": 1}, wantFrom: map[string]string{"threads": sourceDefault}},
		{name: "--threads", args: []string{"--threads", "0"}, want: map[string]any{"Threads": 0}, wantFrom: map[string]string{"threads": "--threads"}},
		{name: "INI threads", ini: "[zmq_proxy_opts]\nthreads = 4\n", want: map[string]any{"Threads": 4}, wantFrom: map[string]string{"threads": iniPath}},
		{name: "--metrics-addr", args: []string{"--metrics-addr", "127.0.0.1:0"}, want: map[string]any{"MetricsAddr": "127.0.0.1:0"}},
		{name: "--metrics-addr without host", args: []string{"--metrics-addr", ":9100"}, want: map[string]any{"MetricsAddr": ":9100"}},
		{name: "single dash long name", args: []string{"-frontend-port", "5000"}, want: map[string]any{"FrontendPort": 5000}},
		{
			name: "last of short and long wins", args: []string{"--frontend-port", "1", "-f", "2"},
			want: map[string]any{"FrontendPort": 2}, wantFrom: map[string]string{"frontend_port": "-f"},
		},

		// The configuration file.
		{
			name: "INI only",
			ini: `[zmq_proxy_opts]
host = 192.0.2.1
frontend_port = 5000
backend_port = 5001
publisher_port = 5002
local_publisher = false
ack_pub_sub = True
url = zmq+etcd://etcd1:2379/
hwm = 10
hwm_bytes = 65536
max_connections = 500
max_message_size = 4096
metrics_addr = 127.0.0.1:9100

[oslo_messaging_zmq]
subscribe_on = 192.0.2.2:5002
zmq_target_expire = 60
zmq_target_update = 20
`,
			want: map[string]any{
				"Host": "192.0.2.1", "FrontendPort": 5000, "BackendPort": 5001, "PublisherPort": 5002,
				"LocalPublisher": false, "AckPubSub": true, "URL": "zmq+etcd://etcd1:2379/",
				"Registry": RegistryURL{Mode: RegistryEtcd, Endpoints: []string{"etcd1:2379"}},
				"HWM":      10, "HWMBytes": int64(65536), "MaxConnections": 500,
				"MaxMessageSize": int64(4096), "MetricsAddr": "127.0.0.1:9100",
				"SubscribeOn":  []string{"tcp://192.0.2.2:5002"},
				"TargetExpire": 60 * time.Second, "TargetUpdate": 20 * time.Second,
				"Kind": actors.KindDoubleRouter,
			},
			wantFrom: map[string]string{"config_file": "-c", "frontend_port": iniPath, "subscribe_on": iniPath, "debug": sourceDefault},
		},
		{
			name: "--config-file", args: []string{"--config-file", iniPath},
			ini: "[zmq_proxy_opts]\nfrontend_port = 5000\n",
			// resolveWithINI passes -c too; the last one wins.
			want:     map[string]any{"FrontendPort": 5000},
			wantFrom: map[string]string{"config_file": "--config-file", "frontend_port": iniPath},
		},
		{
			name: "flag overrides INI", args: []string{"-f", "6000", "--ack-pub-sub=false"},
			ini:  "[zmq_proxy_opts]\nfrontend_port = 5000\nbackend_port = 5001\nack_pub_sub = true\n",
			want: map[string]any{"FrontendPort": 6000, "BackendPort": 5001, "AckPubSub": false},
			wantFrom: map[string]string{
				"frontend_port": "-f", "backend_port": iniPath, "ack_pub_sub": "--ack-pub-sub",
			},
		},
		{name: "INI bool yes", ini: "[zmq_proxy_opts]\nlocal_publisher = yes\n", want: map[string]any{"LocalPublisher": true, "Kind": actors.KindLocalPublisher}},
		{
			name: "unknown keys and sections ignored",
			ini:  "[DEFAULT]\ndebug = true\n[oslo_messaging_zmq]\nfoo = bar\n[zmq_proxy_opts]\nhost = h\n[matchmaker_redis]\nhost = r\n",
			want: map[string]any{"Host": "h", "Debug": false},
		},
		{
			name: "subscribe_on normalised",
			ini:  "[oslo_messaging_zmq]\nsubscribe_on = a:1, tcp://b:2,,TCP://[::1]:3 ,\n",
			want: map[string]any{"SubscribeOn": []string{"tcp://a:1", "tcp://b:2", "tcp://[::1]:3"}},
		},
		{name: "no %()s interpolation", ini: "[zmq_proxy_opts]\nhost = %(name)s\nname = x\n", want: map[string]any{"Host": "%(name)s"}},

		// oslo.messaging's rule for the kind of proxy.
		{name: "kind: nothing", want: map[string]any{"Kind": actors.KindDoubleRouter}},
		{name: "kind: -f alone", args: []string{"-f", "5000"}, want: map[string]any{"Kind": actors.KindSingleRouter}},
		{name: "kind: -f and -b", args: []string{"-f", "5000", "-b", "5001"}, want: map[string]any{"Kind": actors.KindDoubleRouter}},
		{name: "kind: -b alone", args: []string{"-b", "5001"}, want: map[string]any{"Kind": actors.KindDoubleRouter}},
		{name: "kind: -lp wins", args: []string{"-lp", "-f", "5000"}, want: map[string]any{"Kind": actors.KindLocalPublisher}},
		{name: "kind: INI frontend alone", ini: "[zmq_proxy_opts]\nfrontend_port = 5000\n", want: map[string]any{"Kind": actors.KindSingleRouter}},
		{
			name: "kind: -b 0 given keeps single router", args: []string{"-b", "0"},
			ini:  "[zmq_proxy_opts]\nfrontend_port = 5000\nbackend_port = 5001\n",
			want: map[string]any{"Kind": actors.KindSingleRouter},
		},
	}
	hermeticEnv(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, r := mustResolve(t, tt.args, tt.ini)
			checkConfig(t, c, r, tt.want, tt.wantFrom)
		})
	}
}

// $GOMAXPROCS sets the proxy's threads as it sets any Go program's,
// over the file and under the flag.
func TestThreadsFromEnvironment(t *testing.T) {
	hermeticEnv(t)
	t.Setenv("GOMAXPROCS", "3")
	for _, tt := range []struct {
		name     string
		args     []string
		ini      string
		want     int
		wantFrom string
	}{
		{name: "environment", want: 3, wantFrom: "$GOMAXPROCS"},
		{name: "environment over file", ini: "[zmq_proxy_opts]\nthreads = 4\n", want: 3, wantFrom: "$GOMAXPROCS"},
		{name: "flag over environment", args: []string{"--threads", "2"}, want: 2, wantFrom: "--threads"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, r := mustResolve(t, tt.args, tt.ini)
			checkConfig(t, c, r, map[string]any{"Threads": tt.want}, map[string]string{"threads": tt.wantFrom})
		})
	}
	t.Setenv("GOMAXPROCS", "many")
	if _, _, err := resolveWithINI(t, nil, ""); err == nil || err.Error() != `$GOMAXPROCS: "many" is not an integer` {
		t.Errorf("GOMAXPROCS=many: got %v, want the variable and its value named", err)
	}
}

func TestResolveConfigIgnoredKeys(t *testing.T) {
	hermeticEnv(t)
	c, _, err := resolveWithINI(t, nil, "[DEFAULT]\ndebug = true\n[oslo_messaging_zmq]\nfoo = bar\n[other]\nx = 1\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"[DEFAULT] debug", "[oslo_messaging_zmq] foo", "[other] x"}
	if !reflect.DeepEqual(c.ignored, want) {
		t.Errorf("ignored: got %q, want %q", c.ignored, want)
	}
}

func TestResolveConfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		ini     string
		wantErr string // the whole error; "$INI" is the INI file's path
	}{
		{name: "bad port short", args: []string{"-f", "abc"}, wantErr: `-f: "abc" is not a port number`},
		{name: "bad port long", args: []string{"--frontend-port", "abc"}, wantErr: `--frontend-port: "abc" is not a port number`},
		{name: "port too big", args: []string{"-b", "70000"}, wantErr: `-b: "70000" is not in 0..65535`},
		{name: "negative port", args: []string{"--publisher-port", "-1"}, wantErr: `--publisher-port: "-1" is not in 0..65535`},
		{name: "bad bool flag", args: []string{"-d=maybe"}, wantErr: `-d: "maybe" is not a boolean (true/false, yes/no, on/off, 1/0)`},
		{name: "bad hwm", args: []string{"--hwm", "0"}, wantErr: `--hwm: "0" is not at least 1`},
		{name: "bad max message size", args: []string{"--max-message-size", "100"}, wantErr: `--max-message-size: "100" is not at least 256 bytes`},
		{name: "bad hwm bytes", args: []string{"--hwm-bytes", "10"}, wantErr: `--hwm-bytes: "10" is not at least 256 bytes`},
		{name: "bad max connections", args: []string{"--max-connections", "0"}, wantErr: `--max-connections: "0" is not at least 1`},
		{name: "bad max frames", args: []string{"--max-frames", "0"}, wantErr: `--max-frames: "0" is not at least 1`},
		{name: "bad metrics addr", args: []string{"--metrics-addr", "localhost"}, wantErr: `--metrics-addr: "localhost" is not host:port`},
		{name: "bad url scheme", args: []string{"-u", "http://h:1/"}, wantErr: `-u: "http://h:1/" is not a registry URL: scheme "http" is none of zmq+etcd, zmq+redis, zmq`},
		{name: "url without scheme", args: []string{"--url", "h:2379"}, wantErr: `--url: "h:2379" is not a URL of the form zmq+etcd://host:port[,host:port...]/`},
		{name: "url without port", args: []string{"-u", "zmq+etcd://h1:2379,h2/"}, wantErr: `-u: "zmq+etcd://h1:2379,h2/" is not a registry URL: "h2" is not host:port`},
		{name: "url with path", args: []string{"-u", "zmq+etcd://h:2379/x"}, wantErr: `is not a URL of the form`},
		{name: "url without hosts", args: []string{"-u", "zmq+etcd:///"}, wantErr: `-u: "zmq+etcd:///" is not a registry URL: "" is not host:port`},
		{
			name: "bad port in INI", ini: "[zmq_proxy_opts]\nfrontend_port = 70000\n",
			wantErr: `$INI: [zmq_proxy_opts] frontend_port = 70000: not in 0..65535`,
		},
		{
			name: "inline comment is part of the value", ini: "[zmq_proxy_opts]\nfrontend_port = 5000 # front\n",
			wantErr: `$INI: [zmq_proxy_opts] frontend_port = 5000 # front: not a port number`,
		},
		{
			name: "bad bool in INI", ini: "[zmq_proxy_opts]\nack_pub_sub = maybe\n",
			wantErr: `$INI: [zmq_proxy_opts] ack_pub_sub = maybe: not a boolean`,
		},
		{
			name: "bad url in INI", ini: "[zmq_proxy_opts]\nurl = amqp://r:5672/\n",
			wantErr: `$INI: [zmq_proxy_opts] url = amqp://r:5672/: not a registry URL: scheme "amqp" is none of zmq+etcd, zmq+redis, zmq`,
		},
		{
			name: "bad subscribe_on", ini: "[oslo_messaging_zmq]\nsubscribe_on = a:1,b\n",
			wantErr: `$INI: [oslo_messaging_zmq] subscribe_on = a:1,b: not a list of endpoints: "b" is not host:port or tcp://host:port`,
		},
		{
			name: "subscribe_on not tcp", ini: "[oslo_messaging_zmq]\nsubscribe_on = ipc:///tmp/pub\n",
			wantErr: `"ipc:///tmp/pub" is not host:port or tcp://host:port`,
		},
		{
			name: "bad target expiry", ini: "[oslo_messaging_zmq]\nzmq_target_expire = soon\n",
			wantErr: `$INI: [oslo_messaging_zmq] zmq_target_expire = soon: not an integer number of seconds`,
		},
		{
			name: "target update not positive", ini: "[oslo_messaging_zmq]\nzmq_target_update = 0\n",
			wantErr: `$INI: [oslo_messaging_zmq] zmq_target_update = 0: not a positive number of seconds`,
		},
		{
			name: "target update after expiry", ini: "[oslo_messaging_zmq]\nzmq_target_update = 400\n",
			wantErr: `$INI: [oslo_messaging_zmq] zmq_target_update = 400: not less than zmq_target_expire (5, default)`,
		},
		{name: "INI syntax", ini: "[zmq_proxy_opts]\nfrontend_port\n", wantErr: `-c $INI: key-value delimiter not found`},
		{name: "missing config file", args: []string{"-c", "/nonexistent/proxy.ini"}, wantErr: `-c /nonexistent/proxy.ini: open /nonexistent/proxy.ini: no such file or directory`},
		{name: "missing config file long", args: []string{"--config-file", "/nonexistent/proxy.ini"}, wantErr: `--config-file /nonexistent/proxy.ini: open /nonexistent/proxy.ini: no such file or directory`},
		{name: "unknown flag", args: []string{"--nope"}, wantErr: `flag provided but not defined: -nope`},
		{name: "missing value", args: []string{"-f"}, wantErr: `flag needs an argument: -f`},
		{name: "positional argument", args: []string{"-d", "extra"}, wantErr: `unexpected argument "extra"`},
		{name: "bool flag takes no separate value", args: []string{"-lp", "false"}, wantErr: `unexpected argument "false"`},
	}
	hermeticEnv(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, r, err := resolveWithINI(t, tt.args, tt.ini)
			checkError(t, err, r, tt.wantErr)
		})
	}
}

// checkError checks that err is one line that contains wantErr, in which r
// replaces "$INI" and "$TLS".
func checkError(t *testing.T, err error, r *strings.Replacer, wantErr string) {
	t.Helper()
	want := r.Replace(wantErr)
	if err == nil {
		t.Fatalf("resolve: got no error, want %q", want)
	}
	if got := err.Error(); !strings.Contains(got, want) {
		t.Errorf("error: got %q, want it to contain %q", got, want)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error: got %q, want one line", err)
	}
}

func TestResolveConfigHelp(t *testing.T) {
	for _, arg := range []string{"-h", "--help", "-help"} {
		if _, err := ResolveProxy([]string{arg}); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%s: got error %v, want flag.ErrHelp", arg, err)
		}
	}
}

func TestUsage(t *testing.T) {
	for _, cmd := range []Command{CmdProxy, CmdList} {
		var b bytes.Buffer
		PrintUsage(&b, cmd)
		checkUsage(t, cmd, b.String())
	}
}

// checkUsage checks that the option lines of cmd's usage text name each of
// its flags once, and that the text names no flag of another command.
func checkUsage(t *testing.T, cmd Command, usage string) {
	t.Helper()
	for _, o := range options {
		if o.long == "" {
			continue
		}
		if !o.takes(cmd) {
			if strings.Contains(usage, "--"+o.long+" ") {
				t.Errorf("usage of command %d names --%s, an option of another command:\n%s", cmd, o.long, usage)
			}
			continue
		}
		want := "--" + o.long
		if o.short != "" {
			want = "-" + o.short + ", --" + o.long
		}
		n := 0
		for line := range strings.Lines(usage) {
			line = strings.TrimSpace(line)
			if strings.HasPrefix(line, want+" ") || strings.HasPrefix(line, "--"+o.long+" ") {
				n++
			}
		}
		if n != 1 {
			t.Errorf("usage has %d option lines for --%s, want one:\n%s", n, o.long, usage)
		}
	}
}
