package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"maps"
	"os"
	"slices"
	"syscall"

	"github.com/zmq-proxy/zmq-proxy/transport/security"
)

// envPlainPassword may hold the local proxy's PLAIN password instead of
// --plain-password.
const envPlainPassword = "ZMQ_PROXY_PLAIN_PASSWORD"

// securityConfig is what the security options resolve to. The files are
// read when the option is parsed, so that a bad one is reported at start
// with the option that named it.
type securityConfig struct {
	// Server side: the proxy's bound sockets.
	PlainUsersFile string
	plainUsers     *security.PlainUsers
	CurveSecretKey string // file
	curveKeys      security.KeyPair
	CurveAllow     string // directory
	curveAllow     *security.AllowList

	// Client side: the local publisher proxy's SUB.
	CurveServerKey string // Z85 key or file, as given
	curveServer    security.Key
	CurveClientKey string // file
	curveClient    security.KeyPair
	PlainUser      string
	PlainPassword  string

	// Secret files (keys, the admin token) that group or others may read,
	// by option name: logged as a warning at start (loose).
	loose map[string]looseFile
}

// looseFile is a secret file whose mode lets group or others read it.
type looseFile struct {
	path string
	mode os.FileMode
}

// noteLoose records option's file when group or others may read it. A
// warning, not a refusal: Kubernetes mounts Secrets 0644 unless told
// otherwise, and ssh's refusal of such keys is for a file in a home
// directory, not a container's. libzmq and zcert do not look.
func (s *securityConfig) noteLoose(option, path string) {
	delete(s.loose, option)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o077 == 0 {
		return
	}
	if s.loose == nil {
		s.loose = make(map[string]looseFile)
	}
	s.loose[option] = looseFile{path: path, mode: fi.Mode().Perm()}
}

func parsePlainUsers(c *config, v string) (err error) {
	c.Sec.PlainUsersFile, c.Sec.plainUsers = v, nil
	if v == "" {
		return nil
	}
	if c.Sec.plainUsers, err = security.LoadPlainUsers(v); err != nil {
		return fmt.Errorf("not a user file (user:bcrypt-hash per line): %w", err)
	}
	return nil
}

func parseCurveSecret(c *config, option, v string) (security.KeyPair, error) {
	kp, err := security.LoadSecretKey(v)
	if err != nil {
		return kp, fmt.Errorf("not a CURVE secret key file (as zmq-proxy keygen or zcert write it): %w", err)
	}
	c.Sec.noteLoose(option, v)
	return kp, nil
}

func parseCurveAllow(c *config, v string) (err error) {
	c.Sec.CurveAllow, c.Sec.curveAllow = v, nil
	if v == "" {
		return nil
	}
	if c.Sec.curveAllow, err = security.NewAllowList(v); err != nil {
		return fmt.Errorf("not a directory of CURVE public keys: %w", err)
	}
	return nil
}

// parseServerKey reads a public key given in Z85 or as a key file.
func parseServerKey(c *config, v string) (err error) {
	c.Sec.CurveServerKey, c.Sec.curveServer = v, security.Key{}
	if v == "" {
		return nil
	}
	if k, kerr := security.ParseKey(v); kerr == nil {
		c.Sec.curveServer = k
		return nil
	}
	if c.Sec.curveServer, err = security.LoadPublicKey(v); err != nil {
		return fmt.Errorf("neither a Z85 public key nor a key file: %w", err)
	}
	return nil
}

// checkSecurity checks the security options against each other.
func (c *config) checkSecurity() error {
	s := &c.Sec
	pairs := [][2]string{
		{"curve_secret_key", "curve_allow"},
		{"curve_server_key", "curve_client_key"},
		{"plain_user", "plain_password"},
	}
	for _, p := range pairs {
		a, b := c.settings[p[0]], c.settings[p[1]]
		switch {
		case a.raw != "" && b.raw == "":
			return c.blameSetting(p[0], fmt.Errorf("not usable without %s: give %s", p[1], spell(p[1])))
		case a.raw == "" && b.raw != "":
			return c.blameSetting(p[1], fmt.Errorf("not usable without %s: give %s", p[0], spell(p[0])))
		}
	}
	if s.PlainUsersFile != "" && s.CurveSecretKey != "" {
		return c.blameSetting("plain_users", errors.New("not usable with curve_secret_key: a socket has one mechanism, choose PLAIN or CURVE"))
	}
	if s.PlainUser != "" && s.CurveServerKey != "" {
		return c.blameSetting("plain_user", errors.New("not usable with curve_server_key: the subscriber has one mechanism, choose PLAIN or CURVE"))
	}
	if !c.LocalPublisher {
		for _, name := range []string{"curve_server_key", "curve_client_key", "plain_user"} {
			if c.settings[name].raw != "" {
				return c.blameSetting(name, errors.New("only for a local publisher proxy (-lp): a central proxy connects to nobody"))
			}
		}
	}
	return nil
}

// serverSecurity is the mechanism of the proxy's bound sockets; nil = none.
func (c *config) serverSecurity() security.Mechanism {
	switch {
	case c.Sec.plainUsers != nil:
		return security.PlainServer(c.Sec.plainUsers)
	case c.Sec.curveAllow != nil:
		return security.CurveServer(c.Sec.curveKeys, c.Sec.curveAllow)
	}
	return nil
}

// subscriberSecurity is the local proxy SUB's mechanism; nil = none.
func (c *config) subscriberSecurity() security.Mechanism {
	switch {
	case c.Sec.PlainUser != "":
		m, _ := security.PlainClient(c.Sec.PlainUser, c.Sec.PlainPassword) // lengths checked by parsePlainCredential
		return m
	case c.Sec.CurveServerKey != "":
		return security.CurveClient(c.Sec.curveServer, c.Sec.curveClient)
	}
	return nil
}

func parsePlainCredential(v string) (string, error) {
	if len(v) > 255 {
		return "", fmt.Errorf("longer than 255 bytes, the most PLAIN carries")
	}
	return v, nil
}

// logSecurity says at start what the sockets require, and warns when a
// CURVE allow-list is empty: every client is refused then.
func (c *config) logSecurity(logger *slog.Logger) {
	for _, option := range slices.Sorted(maps.Keys(c.Sec.loose)) {
		f := c.Sec.loose[option]
		logger.Warn("secret file readable by group or others: chmod 600 it", "option", option, "file", f.path, "mode", fmt.Sprintf("%04o", f.mode))
	}
	switch {
	case c.Sec.plainUsers != nil:
		logger.Info("sockets require PLAIN", "users", c.Sec.plainUsers.Len(), "file", c.Sec.PlainUsersFile)
	case c.Sec.curveAllow != nil:
		logger.Info("sockets require CURVE", "public_key", c.Sec.curveKeys.Public.String(),
			"allowed_keys", c.Sec.curveAllow.Len(), "allow_dir", c.Sec.CurveAllow)
		if c.Sec.curveAllow.Len() == 0 {
			logger.Warn("the CURVE allow-list is empty: every client is refused until keys are added and the proxy gets SIGHUP",
				"allow_dir", c.Sec.CurveAllow)
		}
	}
	switch {
	case c.Sec.PlainUser != "":
		logger.Info("subscriber uses PLAIN", "user", c.Sec.PlainUser)
	case c.Sec.CurveServerKey != "":
		logger.Info("subscriber uses CURVE", "server_key", c.Sec.curveServer.String(), "public_key", c.Sec.curveClient.Public.String())
	}
}

// reloadSecurity re-reads the allow-list or the user file (on SIGHUP) and
// closes the connections of the keys and users no longer in it (of users
// whose password hash changed too). A file that no longer parses leaves
// the previous list in force, and every connection open.
func (c *config) reloadSecurity(logger *slog.Logger) {
	if u := c.Sec.plainUsers; u != nil {
		if err := u.Reload(); err != nil {
			logger.Error("reload of the PLAIN users failed; the previous list stays", "err", err)
		} else {
			closed := u.CloseRevoked()
			logger.Info("PLAIN users reloaded", "users", u.Len(), "file", c.Sec.PlainUsersFile,
				"closed_connections", closed, "connections", u.Sessions())
		}
	}
	if a := c.Sec.curveAllow; a != nil {
		if err := a.Reload(); err != nil {
			logger.Error("reload of the CURVE allow-list failed; the previous list stays", "err", err)
			return
		}
		closed := a.CloseRevoked()
		logger.Info("CURVE allow-list reloaded", "allowed_keys", a.Len(), "allow_dir", c.Sec.CurveAllow,
			"closed_connections", closed, "connections", a.Sessions())
		if a.Len() == 0 {
			logger.Warn("the CURVE allow-list is empty: every client is refused", "allow_dir", c.Sec.CurveAllow)
		}
	}
}

// runKeygen is "zmq-proxy keygen": it prints a new CURVE key pair in Z85,
// as a secret certificate (the form --curve-secret-key and
// --curve-client-key read), or with -o NAME writes NAME.key (public, for
// an allow-list directory) and NAME.key_secret (mode 0600), as zcert does,
// but never over an existing file unless --force.
func runKeygen(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(progName+" keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "write NAME.key and NAME.key_secret (mode 0600) instead of printing")
	force := fs.Bool("force", false, "with -o, replace NAME.key and NAME.key_secret when they exist")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s keygen [-o NAME [--force]]\n\nPrints a new CURVE key pair in Z85 as a secret certificate.\n\n", progName)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s keygen: unexpected argument %q\n", progName, fs.Arg(0))
		return 2
	}
	if *force && *out == "" {
		fmt.Fprintf(stderr, "%s keygen: --force is for -o NAME\n", progName)
		return 2
	}
	kp, err := security.GenerateKeyPair()
	if err != nil {
		fmt.Fprintf(stderr, "%s keygen: %v\n", progName, err)
		return 1
	}
	if *out == "" {
		fmt.Fprint(stdout, security.CertText(kp, true))
		return 0
	}
	if err := writeKeyFiles(*out, kp, *force); err != nil {
		fmt.Fprintf(stderr, "%s keygen: %v\n", progName, err)
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
			if err := os.Remove(f.path); err != nil && !errors.Is(err, iofs.ErrNotExist) {
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
