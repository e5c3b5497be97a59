package config

import (
	"testing"
	"time"

	"github.com/zmq-proxy/zmq-proxy/actors"
)

func TestDrainTimeoutOption(t *testing.T) {
	hermeticEnv(t)
	tests := []struct {
		name    string
		args    []string
		ini     string
		want    time.Duration
		wantErr string
	}{
		{name: "default", want: actors.DefaultDrainTimeout},
		{name: "duration", args: []string{"--drain-timeout", "1m30s"}, want: 90 * time.Second},
		{name: "seconds", args: []string{"--drain-timeout", "7"}, want: 7 * time.Second},
		{name: "none", args: []string{"--drain-timeout", "0"}, want: 0},
		{name: "file", ini: "[zmq_proxy_opts]\ndrain_timeout = 20s\n", want: 20 * time.Second},
		{name: "negative", args: []string{"--drain-timeout", "-1s"},
			wantErr: `--drain-timeout: "-1s" is not a duration (5s, 1m, a number of seconds, or 0 for no drain)`},
		{name: "words", args: []string{"--drain-timeout", "soon"},
			wantErr: `--drain-timeout: "soon" is not a duration (5s, 1m, a number of seconds, or 0 for no drain)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, r, err := resolveWithINI(t, append([]string{"-u", "zmq://"}, tt.args...), tt.ini)
			if tt.wantErr != "" {
				checkError(t, err, r, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.DrainTimeout != tt.want {
				t.Errorf("DrainTimeout: got %v, want %v", c.DrainTimeout, tt.want)
			}
		})
	}
}
