// Package registry registers proxies in etcd under leases and watches the
// registrations (README, "Flags"; docs/protocol.md, "Registry in etcd").
// Package registry/redis is oslo.messaging's Redis matchmaker.
package registry
