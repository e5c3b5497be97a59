package actors

import (
	"errors"
	"testing"

	"github.com/zmq-proxy/zmq-proxy/transport/security"
)

func TestValidateSecurity(t *testing.T) {
	kp, err := security.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	server := security.CurveServer(kp, security.AllowKeys())
	client := security.CurveClient(kp.Public, kp)
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{"server side on the bound sockets", Config{Security: server}, false},
		{"client side on the bound sockets", Config{Security: client}, true},
		{"client side on a local proxy's SUB", Config{Kind: KindLocalPublisher, SubscribeOn: []string{"h:1"}, SubscriberSecurity: client}, false},
		{"server side on a local proxy's SUB", Config{Kind: KindLocalPublisher, SubscribeOn: []string{"h:1"}, SubscriberSecurity: server}, true},
		{"subscriber security on a central proxy", Config{SubscriberSecurity: client}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if got := err != nil; got != tc.wantErr {
				t.Fatalf("Validate() = %v, want error: %v", err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, ErrConfig) {
				t.Errorf("error %v is not ErrConfig", err)
			}
		})
	}
}
