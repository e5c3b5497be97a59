// Package keyfile writes CURVE key pairs as zcert's certificate files
// (NAME.key public, NAME.key_secret secret, mode 0600), for "zmq-proxy
// keygen", never into a file or through a link that someone else made.
package keyfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"

	"github.com/zmq-proxy/zmq-proxy/transport/security"
)

// CreateNew creates path with mode, refusing any file or link already
// there, whoever made it between a check and this call (O_EXCL; with it a
// symbolic link is not followed either, O_NOFOLLOW says so again).
func CreateNew(path string, mode os.FileMode) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, mode)
}

// Write writes name.key_secret (0600) and name.key (0644), each
// created anew (O_EXCL) and never through a symbolic link (O_NOFOLLOW), so
// that a key is never written into a file someone else made or points
// to. Without force an existing file of either name is an error and
// nothing is written; with force the old files (or links) are removed
// first. On a failure, what was written is removed.
func Write(name string, kp security.KeyPair, force bool) error {
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
		fd, err := CreateNew(f.path, f.mode)
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
