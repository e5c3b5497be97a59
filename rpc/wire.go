package rpc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/zmq-proxy/zmq-proxy/internal/oslo"
	"github.com/zmq-proxy/zmq-proxy/transport"
)

// The frames, as oslo.messaging's driver puts them (docs/protocol.md):
//
//	a DEALER sends       ["", "1.0", type, routing_key, message_id, payload]
//	a DEALER receives    ["", "1.0", reply_id, type, message_id, payload...]
//	a SUB receives       [topic, "1.0", type, message_id, payload...]
//	a server replies     ["", "1.0", "5", reply_id, message_id, [result, failure]]
//	a server acks        ["", "1.0", "6", reply_id, message_id]

var (
	version10 = []byte(transport.Version10)
	typeFrame = [...][]byte{nil, []byte("1"), []byte("2"), []byte("3"), []byte("4"), []byte("5"), []byte("6")}
)

// head is the five frames a DEALER sends before the payload.
func head(t transport.MsgType, routingKey, messageID string) [][]byte {
	var h [5][]byte
	return headInto(&h, t, routingKey, messageID)
}

// headInto is head in h, whose frames share the strings' bytes: a send
// only reads them (the transport copies a message into its queue).
func headInto(h *[5][]byte, t transport.MsgType, routingKey, messageID string) [][]byte {
	*h = [5][]byte{nil, version10, typeFrame[t], readOnly(routingKey), readOnly(messageID)}
	return h[:]
}

// readOnly is s's bytes, not copied: never to be written.
func readOnly(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// inbound is one message a DEALER or SUB received, copied out of its
// batch. For a DEALER, Peer is the sender's identity (reply_id); for a SUB
// it is the routing key (topic).
type inbound struct {
	typ     transport.MsgType
	peer    string
	msgID   string
	payload []byte
}

// parseDirect reads ["", "1.0", reply_id, type, message_id, payload...].
func parseDirect(m transport.Msg) (inbound, error) {
	if len(m) < 5 || len(m[0]) != 0 {
		return inbound{}, fmt.Errorf("%w: %d frames from a DEALER", ErrMalformed, len(m))
	}
	if !bytes.Equal(m[1], version10) {
		return inbound{}, fmt.Errorf("%w: version %.16q", ErrMalformed, m[1])
	}
	t, ok := parseType(m[3])
	if !ok {
		return inbound{}, fmt.Errorf("%w: type %.16q", ErrMalformed, m[3])
	}
	var payload []byte
	if len(m) > 5 {
		payload = m[5]
	}
	return owned(t, m[2], m[4], payload), nil
}

// parsePublished reads [topic, "1.0", type, message_id, payload...].
func parsePublished(m transport.Msg) (inbound, error) {
	if len(m) < 4 || !bytes.Equal(m[1], version10) {
		return inbound{}, fmt.Errorf("%w: %d frames from a PUB", ErrMalformed, len(m))
	}
	t, ok := parseType(m[2])
	if !ok || !t.IsFanout() {
		return inbound{}, fmt.Errorf("%w: published type %.16q", ErrMalformed, m[2])
	}
	var payload []byte
	if len(m) > 4 {
		payload = m[4]
	}
	return owned(t, m[0], m[3], payload), nil
}

// owned copies a message's peer, id and payload out of its batch, in one
// allocation: the payload first, then the strings' bytes, which no slice
// reaches (the payload's is capped), so they never change.
func owned(t transport.MsgType, peer, id, payload []byte) inbound {
	n := len(payload)
	buf := make([]byte, n+len(peer)+len(id))
	copy(buf, payload)
	copy(buf[n:], peer)
	copy(buf[n+len(peer):], id)
	in := inbound{typ: t, peer: bytesString(buf[n : n+len(peer)]), msgID: bytesString(buf[n+len(peer):])}
	if payload != nil {
		in.payload = buf[:n:n]
	}
	return in
}

// bytesString is b as a string, not copied: b must never change.
func bytesString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// parseType reads a type frame: 1 to 6, and 7, the NACK a proxy sends a
// client that asked for it.
func parseType(b []byte) (transport.MsgType, bool) {
	if len(b) != 1 || b[0] < '1' || b[0] > '7' {
		return 0, false
	}
	return transport.MsgType(b[0] - '0'), true
}

// request is the body of a CALL, CAST or CAST_FANOUT.
type request struct {
	Method string          `json:"method"`
	Args   json.RawMessage `json:"args"`
}

// encodeRequest is [context, {"method": NAME, "args": ARGS}], spaced as
// Python's json.dumps spaces it.
func encodeRequest(method string, args any) ([]byte, error) {
	return encodeRequestRoom(method, args, 0)
}

// encodeRequestRoom is encodeRequest with room for extra bytes past the
// payload's end, in its capacity (for its message id: ids.nextAfter); one
// allocation for raw arguments and a plain method name.
func encodeRequestRoom(method string, args any, extra int) ([]byte, error) {
	a, err := marshalArgs(args)
	if err != nil {
		return nil, err
	}
	return oslo.AppendRequest(nil, method, a, extra)
}

// marshalArgs encodes args, which must be a JSON object (nil = {}). A
// json.RawMessage is sent as it is, once checked: a caller that sends the
// same arguments again and again encodes them once.
func marshalArgs(args any) ([]byte, error) {
	if args == nil {
		return []byte("{}"), nil
	}
	if raw, ok := args.(json.RawMessage); ok {
		t := bytes.TrimSpace(raw)
		if len(t) == 0 || t[0] != '{' || !oslo.Valid(t) {
			return nil, fmt.Errorf("%w: args must be a JSON object, got %.32q", ErrBadTarget, t)
		}
		return t, nil
	}
	a, err := oslo.PyJSON(args)
	if err != nil {
		return nil, fmt.Errorf("%w: args: %w", ErrBadTarget, err)
	}
	if len(a) == 0 || a[0] != '{' {
		return nil, fmt.Errorf("%w: args must be a JSON object, got %.32s", ErrBadTarget, a)
	}
	return a, nil
}

// decodeRequest reads [context, {"method", "args"}] (oslo.DecodeRequest).
func decodeRequest(payload []byte) (ctx json.RawMessage, req request, err error) {
	return decodeRequestIn(payload, nil)
}

// decodeRequestIn is decodeRequest that takes a method's name from names
// (methodNames of a server's handlers) when it is there, instead of
// allocating it.
func decodeRequestIn(payload []byte, names map[string]string) (ctx json.RawMessage, req request, err error) {
	ctx, req.Method, req.Args, err = oslo.DecodeRequest(payload, names)
	if err != nil {
		return nil, request{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return ctx, req, nil
}

// methodNames maps each name of handlers that is valid UTF-8 without a
// backslash to itself: as a JSON string's bytes, such a name is its value
// (a name with a backslash is not; its bytes could be the escape of
// another name).
func methodNames(handlers map[string]Handler) map[string]string {
	names := make(map[string]string, len(handlers))
	for name := range handlers {
		if utf8.ValidString(name) && !strings.Contains(name, `\`) {
			names[name] = name
		}
	}
	return names
}

// encodeReply is [result, failure]; failure is null or a JSON string
// holding the exception object.
func encodeReply(result any, failure *RemoteError) ([]byte, error) {
	r, err := oslo.PyJSON(result)
	if err != nil {
		return nil, err
	}
	f := []byte("null")
	if failure != nil {
		obj, err := oslo.PyJSON(failure)
		if err != nil {
			return nil, err
		}
		if f, err = oslo.PyJSON(string(obj)); err != nil {
			return nil, err
		}
	}
	out := make([]byte, 0, len(r)+len(f)+4)
	out = append(out, '[')
	out = append(out, r...)
	out = append(out, ", "...)
	out = append(out, f...)
	return append(out, ']'), nil
}

// decodeReply reads [result, failure].
func decodeReply(payload []byte) (json.RawMessage, *RemoteError, error) {
	result, failure, err := oslo.SplitPair(payload)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: reply payload is not [result, failure]", ErrMalformed)
	}
	re, err := parseFailure(failure)
	if err != nil {
		return nil, nil, err
	}
	return result, re, nil
}

// Notification is the body of a NOTIFY, as oslo.messaging's notifier
// writes it.
type Notification struct {
	MessageID   string          `json:"message_id"`
	PublisherID string          `json:"publisher_id"`
	EventType   string          `json:"event_type"`
	Priority    string          `json:"priority"`
	Payload     json.RawMessage `json:"payload"`
	Timestamp   string          `json:"timestamp"`
}

// timestampLayout is Python's str(datetime.utcnow()).
const timestampLayout = "2006-01-02 15:04:05.000000"

func encodeNotification(n Notification) ([]byte, error) {
	body, err := oslo.PyJSON(n)
	if err != nil {
		return nil, err
	}
	return append(append([]byte("[{}, "), body...), ']'), nil
}

func decodeNotification(payload []byte) (Notification, error) {
	var parts []json.RawMessage
	var n Notification
	if err := json.Unmarshal(payload, &parts); err != nil || len(parts) != 2 {
		return n, fmt.Errorf("%w: notification payload is not [context, message]", ErrMalformed)
	}
	if err := json.Unmarshal(parts[1], &n); err != nil {
		return n, fmt.Errorf("%w: notification: %w", ErrMalformed, err)
	}
	return n, nil
}

func timestamp(t time.Time) string { return t.UTC().Format(timestampLayout) }
