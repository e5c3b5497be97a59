// Package registry registers proxies in etcd under leases and watches the
// registrations: the contract of SPEC.md, "Registry".
package registry
