package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"

	"github.com/zmq-proxy/zmq-proxy/internal/config"
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
	if err := writeKeyFiles(*out, kp, *force); err != nil {
		fmt.Fprintf(stderr, "%s keygen: %v\n", config.ProgName, err)
		return 1
	}
	fmt.Fprintf(stdout, "public-key = \"%s\"\nwrote %s.key and %s.key_secret\n", kp.Public, *out, *out)
	return 0
}

// createNew creates path with mode, refusing any file or link already
// there, whoever made it between a check and this call (O_EXCL; with it a
// symbolic link is not followed either, O_NOFOLLOW says so again).
func createNew(path string, mode os.FileMode) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, mode)
}

// writeKeyFiles writes name.key_secret (0600) and name.key (0644), each
// created anew (O_EXCL) and never through a symbolic link (O_NOFOLLOW), so
// that a key is never written into a file someone else made or points
// to. Without force an existing file of either name is an error and
// nothing is written; with force the old files (or links) are removed
// first. On a failure, what was written is removed.
func writeKeyFiles(name string, kp security.KeyPair, force bool) error {
	files := []struct {
		path, text string
		mode       os.FileMode
	}{
		{name + ".key_secret", security.CertText(kp, true), 0o600},
		{name + ".key", security.CertText(kp, false), 0o644},
	}
	if !force {
		for _, f := range files {
			if _, err := os.Lstat(f.path); err == nil {
				return fmt.Errorf("%s exists: give --force to replace it", f.path)
			}
		}
	}
	var written []string
	undo := func(err error) error {
		for _, p := range written {
			os.Remove(p)
		}
		return err
	}
	for _, f := range files {
		if force {
			if err := os.Remove(f.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return undo(err)
			}
		}
		fd, err := createNew(f.path, f.mode)
		if err != nil {
			return undo(err)
		}
		written = append(written, f.path)
		_, werr := io.WriteString(fd, f.text)
		if cerr := fd.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return undo(fmt.Errorf("%s: %w", f.path, werr))
		}
	}
	return nil
}
