package etcdserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// DefaultProbeTimeout bounds Probe when its context has no deadline. It is
// generous because an etcd that is starting accepts connections before it
// answers them.
const DefaultProbeTimeout = 5 * time.Second

// Probe tells what answers on addr (host:port; a leading "http://" is
// ignored), over plain text:
//
//   - nil: an etcd answered the maintenance Status call (an etcd that
//     answers with an etcd error, such as one that wants authentication,
//     counts as an etcd);
//   - ErrNothingListening: the connection was refused;
//   - ErrNotEtcd, with detail: something accepted the connection but did
//     not answer etcd's gRPC within the deadline (an HTTP server, another
//     TCP service, a TLS-only etcd, or an etcd too slow to answer);
//   - another error: the address could not be reached (bad address, no
//     route, dial timeout), or ctx was cancelled (context.Canceled).
//
// A deadline that passes while something is connected but silent is
// ErrNotEtcd: nothing answered as etcd within the time given.
//
// If ctx has no deadline, Probe gives up after DefaultProbeTimeout.
func Probe(ctx context.Context, addr string) error {
	addr = strings.TrimPrefix(addr, "http://")
	parent := ctx
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultProbeTimeout)
		defer cancel()
	}

	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("probe %s: %w", addr, ErrNothingListening)
		}
		return fmt.Errorf("probe %s: %w", addr, err)
	}
	conn.Close()

	// A gRPC call without WaitForReady fails at once when the connection
	// breaks (an HTTP/1 server, garbage), and waits while it is still being
	// set up (an etcd that accepts but does not serve yet).
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("probe %s: %w", addr, err)
	}
	defer cc.Close()
	_, err = pb.NewMaintenanceClient(cc).Status(ctx, &pb.StatusRequest{})
	if err == nil {
		return nil
	}
	if _, ok := rpctypes.Error(err).(rpctypes.EtcdError); ok {
		return nil
	}
	if perr := parent.Err(); errors.Is(perr, context.Canceled) {
		return fmt.Errorf("probe %s: %w", addr, perr)
	}
	return fmt.Errorf("probe %s: %w: %v", addr, ErrNotEtcd, err)
}
