package config

import (
	"bytes"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/zmq-proxy/zmq-proxy/actors"
)

// osloINI is a configuration file written the way oslo.messaging's
// ZeroMQ driver documents it: the transport URL in [DEFAULT], the
// driver's options, the proxy's, and the Redis matchmaker's; keys that
// zmq-proxy does not use among them.
const osloINI = `[DEFAULT]
transport_url = "zmq+redis://127.0.0.1:6390"
debug = True

[oslo_messaging_zmq]
rpc_zmq_host = node-1
use_pub_sub = false
use_router_proxy = true
rpc_zmq_matchmaker = redis
zmq_target_expire = 60
zmq_target_update = 20

[zmq_proxy_opts]
frontend_port = 50001
backend_port = 50002
publisher_port = 50003

[matchmaker_redis]
host = 10.0.0.5
port = 6391
password = s3cret
sentinel_hosts =
`

func TestOsloConfigFile(t *testing.T) {
	hermeticEnv(t)
	// oslo.config reads a quoted value without its quotes; ini does too.
	c, r, err := resolveWithINI(t, nil, osloINI)
	if err != nil {
		t.Fatalf("resolve: %v", err)
	}
	checkConfig(t, c, r, map[string]any{
		"URL": "zmq+redis://127.0.0.1:6390",
		"Registry": RegistryURL{Mode: RegistryRedis, RedisAddr: "127.0.0.1:6390", RedisPassword: "s3cret",
			redisHost: "127.0.0.1", redisPort: 6390},
		"UsePubSub":    actors.PubSubOff,
		"FrontendPort": 50001, "BackendPort": 50002, "PublisherPort": 50003,
		"TargetExpire": 60 * time.Second, "TargetUpdate": 20 * time.Second,
		"Debug": false, // [DEFAULT] debug is oslo's, not ours
	}, map[string]string{"url": iniPath, "use_pub_sub": iniPath, "redis_password": iniPath})
	wantIgnored := []string{
		"[DEFAULT] debug", "[oslo_messaging_zmq] rpc_zmq_host", "[oslo_messaging_zmq] use_router_proxy",
		"[oslo_messaging_zmq] rpc_zmq_matchmaker", "[matchmaker_redis] sentinel_hosts",
	}
	if !reflect.DeepEqual(c.ignored, wantIgnored) {
		t.Errorf("ignored: got %q, want %q", c.ignored, wantIgnored)
	}
	rc := c.registryConfig()
	want := actors.RedisConfig{Addr: "127.0.0.1:6390", Password: "s3cret", Update: 20 * time.Second}
	if rc.Redis != want || rc.TTL != 60*time.Second || rc.Disabled {
		t.Errorf("registryConfig: got Redis %+v TTL %v Disabled %v, want %+v TTL 60s", rc.Redis, rc.TTL, rc.Disabled, want)
	}
	if pc := c.ProxyConfig(slog.Default()); pc.PubSub != actors.PubSubOff {
		t.Errorf("proxyConfig PubSub: got %v, want false", pc.PubSub)
	}

	// Each ignored key is logged once, at debug; the password never.
	var buf bytes.Buffer
	c.Log(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	for _, key := range wantIgnored {
		if n := strings.Count(buf.String(), `msg="ignoring unknown configuration key"`+" file="+c.ConfigFile+` key="`+key+`"`); n != 1 {
			t.Errorf("%q logged %d times, want once\n%s", key, n, buf.String())
		}
	}
	if strings.Contains(buf.String(), "s3cret") {
		t.Errorf("the Redis password is in the log:\n%s", buf.String())
	}
}

func TestRegistryURLSchemes(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		ini      string
		want     RegistryURL
		wantFrom string
	}{
		{name: "zmq+redis in full", args: []string{"-u", "zmq+redis://:pw@r1:6380/3"},
			want: RegistryURL{Mode: RegistryRedis, RedisAddr: "r1:6380", RedisPassword: "pw", RedisDB: 3, redisHost: "r1", redisPort: 6380}, wantFrom: "-u"},
		{name: "zmq+redis defaults", args: []string{"-u", "zmq+redis://"},
			want: RegistryURL{Mode: RegistryRedis, RedisAddr: "127.0.0.1:6379"}},
		{name: "zmq+redis from [matchmaker_redis]", args: []string{"-u", "zmq+redis://"},
			ini:  "[matchmaker_redis]\nhost = r2\nport = 7000\npassword = p2\n",
			want: RegistryURL{Mode: RegistryRedis, RedisAddr: "r2:7000", RedisPassword: "p2"}},
		{name: "the URL wins over [matchmaker_redis]", args: []string{"-u", "zmq+redis://:pw@r1:6380"},
			ini:  "[matchmaker_redis]\nhost = r2\nport = 7000\npassword = p2\n",
			want: RegistryURL{Mode: RegistryRedis, RedisAddr: "r1:6380", RedisPassword: "pw", redisHost: "r1", redisPort: 6380}},
		{name: "transport_url when url is absent", ini: "[DEFAULT]\ntransport_url = zmq+etcd://e1:2379/\n",
			want: RegistryURL{Mode: RegistryEtcd, Endpoints: []string{"e1:2379"}}, wantFrom: iniPath},
		{name: "url wins over transport_url", ini: "[DEFAULT]\ntransport_url = zmq+redis://r:1\n[zmq_proxy_opts]\nurl = zmq://\n",
			want: RegistryURL{Mode: RegistryNone}, wantFrom: iniPath},
		{name: "-u wins over transport_url", args: []string{"-u", "zmq://"}, ini: "[DEFAULT]\ntransport_url = zmq+redis://r:1\n",
			want: RegistryURL{Mode: RegistryNone}, wantFrom: "-u"},
		{name: "zmq", args: []string{"-u", "zmq://"}, want: RegistryURL{Mode: RegistryNone}},
		{name: "zmq+etcd", args: []string{"-u", "zmq+etcd://e:1/"}, want: RegistryURL{Mode: RegistryEtcd, Endpoints: []string{"e:1"}}},
	}
	hermeticEnv(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, r := mustResolve(t, tt.args, tt.ini)
			want := map[string]string{}
			if tt.wantFrom != "" {
				want["url"] = tt.wantFrom
			}
			checkConfig(t, c, r, map[string]any{"Registry": tt.want}, want)
		})
	}
}

func TestUsePubSub(t *testing.T) {
	tests := []struct {
		name string
		args []string
		ini  string
		want actors.PubSub
	}{
		{name: "unset", want: actors.PubSubAuto},
		{name: "file true", ini: "[oslo_messaging_zmq]\nuse_pub_sub = true\n", want: actors.PubSubOn},
		{name: "file False", ini: "[oslo_messaging_zmq]\nuse_pub_sub = False\n", want: actors.PubSubOff},
		{name: "flag", args: []string{"--use-pub-sub"}, want: actors.PubSubOn},
		{name: "flag false over file", args: []string{"--use-pub-sub=false"}, ini: "[oslo_messaging_zmq]\nuse_pub_sub = true\n", want: actors.PubSubOff},
	}
	hermeticEnv(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, r := mustResolve(t, tt.args, tt.ini)
			checkConfig(t, c, r, map[string]any{"UsePubSub": tt.want}, nil)
		})
	}
}

// A value a flag overrides is not parsed from the file: an operator's
// file keeps working with a flag that replaces what zmq-proxy refuses.
func TestFlagOverriddenFileValueNotValidated(t *testing.T) {
	hermeticEnv(t)
	c, r, err := resolveWithINI(t, []string{"-u", "zmq://", "-f", "1"},
		"[zmq_proxy_opts]\nurl = rabbit://guest@r:5672/\nfrontend_port = x\n")
	if err != nil {
		t.Fatalf("resolve: got %v, want none", err)
	}
	checkConfig(t, c, r, map[string]any{"Registry": RegistryURL{Mode: RegistryNone}, "FrontendPort": 1},
		map[string]string{"url": "-u", "frontend_port": "-f"})
}

func TestOsloConfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		ini     string
		wantErr string
	}{
		{name: "bad use_pub_sub", ini: "[oslo_messaging_zmq]\nuse_pub_sub = maybe\n",
			wantErr: `$INI: [oslo_messaging_zmq] use_pub_sub = maybe: not a boolean`},
		{name: "bad transport_url", ini: "[DEFAULT]\ntransport_url = rabbit://r:5672/\n",
			wantErr: `$INI: [DEFAULT] transport_url = rabbit://r:5672/: not a registry URL: scheme "rabbit" is none of zmq+etcd, zmq+redis, zmq`},
		{name: "bad redis url", args: []string{"-u", "zmq+redis://r:1,s:2"},
			wantErr: `-u: "zmq+redis://r:1,s:2" is not a URL of the form zmq+redis://[:password@]host:port[/db]`},
		{name: "bad [matchmaker_redis] port", ini: "[matchmaker_redis]\nport = 0\n",
			wantErr: `$INI: [matchmaker_redis] port = 0: not in 1..65535`},
		{name: "bad [matchmaker_redis] port text", ini: "[matchmaker_redis]\nport = redis\n",
			wantErr: `$INI: [matchmaker_redis] port = redis: not a port number`},
	}
	hermeticEnv(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, r, err := resolveWithINI(t, tt.args, tt.ini)
			checkError(t, err, r, tt.wantErr)
		})
	}
}

// A password in a URL is never logged nor shown in an error.
func TestURLPasswordHidden(t *testing.T) {
	hermeticEnv(t)
	c, _, err := resolveWithINI(t, []string{"-u", "zmq+redis://:topsecret@r:1"}, "[DEFAULT]\ntransport_url = zmq+redis://:othersecret@r:2\n")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	c.Log(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if strings.Contains(buf.String(), "topsecret") || strings.Contains(buf.String(), "othersecret") {
		t.Errorf("a URL password is in the log:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), "value=zmq+redis://:xxxxx@r:1") {
		t.Errorf("the URL is not logged with its password masked:\n%s", buf.String())
	}
	_, _, err = resolveWithINI(t, []string{"-u", "zmq+redis://:topsecret@r:1,s:2"}, "")
	if err == nil || strings.Contains(err.Error(), "topsecret") {
		t.Errorf("bad URL: got error %v, want one without the password", err)
	}
}

func TestListRefusesRedis(t *testing.T) {
	hermeticEnv(t)
	c, _, err := resolveCmdWithINI(t, CmdList, []string{"-u", "zmq+redis://r:1"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.EtcdClientConfig(); err == nil || !strings.Contains(err.Error(), "not an etcd registry, which this command reads") {
		t.Errorf("list with a Redis URL: got %v, want an error saying it reads etcd", err)
	}
}
