// Package actors is the zmq-proxy daemon as a library: a central
// (double- or single-router) proxy or a node-local publisher, with one
// face. New starts a Proxy from one Config: its sockets, each owned by a
// protoactor-go actor under one supervisor (supervisor.go); its
// registration in etcd or oslo.messaging's Redis matchmaker
// (registry.go); its HTTP endpoints, metrics, admin and pprof, each on
// its own address (http.go). Ready is closed once the proxy is in the
// registry, Err reports a fatal failure, Addrs says where it listens, and
// Close stops it, deregistering before any socket closes. Pause, Resume
// and Drain steer it.
package actors
