// Package security implements the ZMTP 3 security mechanisms PLAIN
// (RFC 24) and CURVE (RFC 26, CurveZMQ) in pure Go, wire-compatible with
// libzmq.
//
// A Mechanism is one side of one mechanism, configured once and shared by
// every connection of a socket: PlainServer and PlainClient, CurveServer
// and CurveClient. Handshake runs the ZMTP greeting and the mechanism's
// handshake over a fresh connection and returns the peer's metadata and,
// for CURVE, a connection that encrypts what is written to it and
// decrypts what is read from it.
//
// That connection speaks plain ZMTP frames to its user, so a frame reader
// and writer built for NULL work unchanged above it. Each Write must hold
// whole frames; the whole burst is sealed (one MESSAGE command per frame,
// as RFC 26 requires) into one buffer and written with one call. Reads
// decrypt frame by frame into a buffer whose size is bounded by the
// largest message allowed.
//
// Before a peer is authenticated, nothing it sends can make the handshake
// allocate more than a fixed bound (a command is at most maxCommand bytes,
// read into one fixed buffer; the fuzz tests check the total), and a CURVE
// server keeps nothing of a client between WELCOME and INITIATE but a
// cookie key and HELLO's nonce: the client's short-term key and the
// server's short-term secret travel in the cookie, sealed with that key,
// as RFC 26 describes.
package security
