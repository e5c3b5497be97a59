package rpc

import "github.com/zmq-proxy/zmq-proxy/transport"

// MsgType is a message's type, as Message.Type holds it.
type MsgType = transport.MsgType

// The types a handler, Notify or Observe sees in Message.Type.
const (
	TypeCall       = transport.TypeCall
	TypeCast       = transport.TypeCast
	TypeCastFanout = transport.TypeCastFanout
	TypeNotify     = transport.TypeNotify
)
