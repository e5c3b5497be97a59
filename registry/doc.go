// Package registry is where proxies and rpc servers register and where
// proxies, clients and servers find them: one Registry interface
// (registry.go), with etcd (NewEtcd; records under leases, watched) and
// oslo.messaging's Redis matchmaker (NewRedis; sets read every poll)
// behind it, and Open building either from a configuration
// (docs/registry.md; README, "Flags"; docs/protocol.md, "Registry in
// etcd" and "The Redis matchmaker"). Package registry/redis is the
// matchmaker's own layer.
package registry
