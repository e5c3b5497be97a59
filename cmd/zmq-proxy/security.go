package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

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

func parseCurveSecret(v string) (security.KeyPair, error) {
	kp, err := security.LoadSecretKey(v)
	if err != nil {
		return kp, fmt.Errorf("not a CURVE secret key file (as zmq-proxy keygen or zcert write it): %w", err)
	}
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

// reloadSecurity re-reads the allow-list or the user file (on SIGHUP). A
// file that no longer parses leaves the previous list in force.
func (c *config) reloadSecurity(logger *slog.Logger) {
	if u := c.Sec.plainUsers; u != nil {
		if err := u.Reload(); err != nil {
			logger.Error("reload of the PLAIN users failed; the previous list stays", "err", err)
		} else {
			logger.Info("PLAIN users reloaded", "users", u.Len(), "file", c.Sec.PlainUsersFile)
		}
	}
	if a := c.Sec.curveAllow; a != nil {
		if err := a.Reload(); err != nil {
			logger.Error("reload of the CURVE allow-list failed; the previous list stays", "err", err)
			return
		}
		logger.Info("CURVE allow-list reloaded", "allowed_keys", a.Len(), "allow_dir", c.Sec.CurveAllow)
		if a.Len() == 0 {
			logger.Warn("the CURVE allow-list is empty: every client is refused", "allow_dir", c.Sec.CurveAllow)
		}
	}
}

// runKeygen is "zmq-proxy keygen": it prints a new CURVE key pair in Z85,
// as a secret certificate (the form --curve-secret-key and
// --curve-client-key read), or with -o NAME writes NAME.key (public, for
// an allow-list directory) and NAME.key_secret (mode 0600), as zcert does.
func runKeygen(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(progName+" keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "write NAME.key and NAME.key_secret instead of printing")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s keygen [-o NAME]\n\nPrints a new CURVE key pair in Z85 as a secret certificate.\n\n", progName)
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
	kp, err := security.GenerateKeyPair()
	if err != nil {
		fmt.Fprintf(stderr, "%s keygen: %v\n", progName, err)
		return 1
	}
	if *out == "" {
		fmt.Fprint(stdout, security.CertText(kp, true))
		return 0
	}
	if err := os.WriteFile(*out+".key_secret", []byte(security.CertText(kp, true)), 0o600); err != nil {
		fmt.Fprintf(stderr, "%s keygen: %v\n", progName, err)
		return 1
	}
	if err := os.WriteFile(*out+".key", []byte(security.CertText(kp, false)), 0o644); err != nil {
		fmt.Fprintf(stderr, "%s keygen: %v\n", progName, err)
		return 1
	}
	fmt.Fprintf(stdout, "public-key = \"%s\"\nwrote %s.key and %s.key_secret\n", kp.Public, *out, *out)
	return 0
}
