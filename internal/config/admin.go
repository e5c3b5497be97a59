package config

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"
)

// The admin endpoint itself is the library's (actors/http.go); the
// command reads its address and its token.

// maxTokenFile bounds what an admin token file may hold.
const maxTokenFile = 4 << 10

// minToken is the shortest token accepted: 16 bytes, 128 bits if random
// (openssl rand -hex 16 makes 32 characters).
const minToken = 16

// ReadTokenFile reads an admin token: the file's text without surrounding
// white space, one line of at least minToken printable characters. No
// error quotes the file's contents.
func ReadTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxTokenFile {
		return "", fmt.Errorf("larger than %d bytes, not a token file", maxTokenFile)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < minToken {
		return "", fmt.Errorf("the token is %d characters long, at least %d wanted (openssl rand -hex 16 makes one)", len(tok), minToken)
	}
	for i := 0; i < len(tok); i++ {
		if tok[i] <= ' ' || tok[i] > '~' {
			return "", fmt.Errorf("the token has a space or a non-printable character at position %d: one line of printable ASCII wanted", i+1)
		}
	}
	return tok, nil
}

// parseAdminAddr parses --admin-addr: host:port, the host loopback when
// not given; "" is off.
func parseAdminAddr(s string) (string, error) {
	addr, err := parseListenAddr(s)
	if err != nil || addr == "" {
		return addr, err
	}
	host, port, _ := net.SplitHostPort(addr)
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}
