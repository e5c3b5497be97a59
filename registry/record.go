package registry

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// DefaultPrefix is where records live unless configured otherwise.
const DefaultPrefix = "/zmq-proxy/"

// KindLocal is the Kind of a local publisher proxy's record: it has a
// publisher and no router, and serves the services of its Host.
const KindLocal = "local"

// Record is one proxy's registration, stored as JSON under
// <prefix>proxies/<id>, bound to the proxy's lease.
type Record struct {
	// ID is unique to one run of one proxy: "host/random".
	ID string `json:"id"`
	// Kind is "double-router", "single-router" or "local".
	Kind string `json:"kind"`
	// Host is the proxy's host name.
	Host string `json:"host"`
	// Frontend, Backend and Publisher are the addresses as bound,
	// tcp://host:port; empty when the kind has no such socket.
	Frontend  string `json:"frontend,omitempty"`
	Backend   string `json:"backend,omitempty"`
	Publisher string `json:"publisher,omitempty"`
	// Started is when the proxy process started.
	Started time.Time `json:"started"`
	// Generation grows with every start of a proxy on a host (it is the
	// start time in nanoseconds), so that a restarted proxy's record can be
	// told from the stale one of its previous run until that one expires.
	Generation int64 `json:"generation"`
}

// Key is the etcd key of a record with the given id.
func Key(prefix, id string) string { return prefix + "proxies/" + id }

func (r Record) marshal() (string, error) {
	b, err := json.Marshal(r)
	return string(b), err
}

func unmarshalRecord(key string, v []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(v, &r); err != nil {
		return Record{}, fmt.Errorf("%w: %s: %w", ErrBadRecord, key, err)
	}
	return r, nil
}

// Validate checks a record before it is registered.
func (r Record) Validate() error {
	if r.ID == "" || strings.ContainsAny(r.ID, "\x00") {
		return fmt.Errorf("%w: id %q", ErrBadRecord, r.ID)
	}
	if r.Kind == "" {
		return fmt.Errorf("%w: %s has no kind", ErrBadRecord, r.ID)
	}
	return nil
}
