package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/zmq-proxy/zmq-proxy/internal/config"
	"github.com/zmq-proxy/zmq-proxy/internal/keyfile"
	"github.com/zmq-proxy/zmq-proxy/transport/security"
)

// runKeygen is "zmq-proxy keygen": it prints a new CURVE key pair in Z85,
// as a secret certificate (the form --curve-secret-key and
// --curve-client-key read), or with -o NAME writes NAME.key (public, for
// an allow-list directory) and NAME.key_secret (mode 0600), as zcert does,
// but never over an existing file unless --force.
func runKeygen(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(config.ProgName+" keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "write NAME.key and NAME.key_secret (mode 0600) instead of printing")
	force := fs.Bool("force", false, "with -o, replace NAME.key and NAME.key_secret when they exist")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s keygen [-o NAME [--force]]\n\nPrints a new CURVE key pair in Z85 as a secret certificate.\n\n", config.ProgName)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s keygen: unexpected argument %q\n", config.ProgName, fs.Arg(0))
		return 2
	}
	if *force && *out == "" {
		fmt.Fprintf(stderr, "%s keygen: --force is for -o NAME\n", config.ProgName)
		return 2
	}
	kp, err := security.GenerateKeyPair()
	if err != nil {
		fmt.Fprintf(stderr, "%s keygen: %v\n", config.ProgName, err)
		return 1
	}
	if *out == "" {
		fmt.Fprint(stdout, security.CertText(kp, true))
		return 0
	}
	if err := keyfile.Write(*out, kp, *force); err != nil {
		fmt.Fprintf(stderr, "%s keygen: %v\n", config.ProgName, err)
		return 1
	}
	fmt.Fprintf(stdout, "public-key = \"%s\"\nwrote %s.key and %s.key_secret\n", kp.Public, *out, *out)
	return 0
}
