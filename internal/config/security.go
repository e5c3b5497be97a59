package config

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"

	"github.com/zmq-proxy/zmq-proxy/transport/security"
)

// envPlainPassword may hold the local proxy's PLAIN password instead of
// --plain-password.
const envPlainPassword = "ZMQ_PROXY_PLAIN_PASSWORD"

// securityConfig is what the security options Resolve to. The files are
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

func parsePlainUsers(c *Config, v string) (err error) {
	c.Sec.PlainUsersFile, c.Sec.plainUsers = v, nil
	if v == "" {
		return nil
	}
	if c.Sec.plainUsers, err = security.LoadPlainUsers(v); err != nil {
		return fmt.Errorf("not a user file (user:bcrypt-hash per line): %w", err)
	}
	return nil
}

func parseCurveSecret(c *Config, option, v string) (security.KeyPair, error) {
	kp, err := security.LoadSecretKey(v)
	if err != nil {
		return kp, fmt.Errorf("not a CURVE secret key file (as zmq-proxy keygen or zcert write it): %w", err)
	}
	c.Sec.noteLoose(option, v)
	return kp, nil
}

// curveSecretOption is the setter of an option naming a CURVE secret key
// file (curve_secret_key, curve_client_key): fields gives the option's
// file name and key pair in the security configuration.
func curveSecretOption(option string, fields func(*securityConfig) (*string, *security.KeyPair)) func(*Config, string) error {
	return func(c *Config, v string) (err error) {
		file, kp := fields(&c.Sec)
		*file, *kp = v, security.KeyPair{}
		delete(c.Sec.loose, option)
		if v != "" {
			*kp, err = parseCurveSecret(c, option, v)
		}
		return err
	}
}

func parseCurveAllow(c *Config, v string) (err error) {
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
func parseServerKey(c *Config, v string) (err error) {
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
func (c *Config) checkSecurity() error {
	s := &c.Sec
	pairs := [][2]string{
		{"curve_secret_key", "curve_allow"},
		{"curve_server_key", "curve_client_key"},
		{"plain_user", "plain_password"},
	}
	if err := c.checkPairs(pairs...); err != nil {
		return err
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
func (c *Config) serverSecurity() security.Mechanism {
	switch {
	case c.Sec.plainUsers != nil:
		return security.PlainServer(c.Sec.plainUsers)
	case c.Sec.curveAllow != nil:
		return security.CurveServer(c.Sec.curveKeys, c.Sec.curveAllow)
	}
	return nil
}

// subscriberSecurity is the local proxy SUB's mechanism; nil = none.
func (c *Config) subscriberSecurity() security.Mechanism {
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
func (c *Config) LogSecurity(logger *slog.Logger) {
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
func (c *Config) ReloadSecurity(logger *slog.Logger) {
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
