package sandbox

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sandboxd/sandboxd/runtime/stdioconn"
)

// Agent connection limits.
const (
	// MaxAgentMessage caps one message from the agent: Exec output and file
	// chunks are at most 256 KiB, an Exec result carries at most 16 MiB of
	// figures (policy.MaxImageBytes) and 1,000 file entries, so 24 MiB
	// leaves room and bounds memory.
	MaxAgentMessage = 24 << 20
	// agentWindow is the HTTP/2 flow-control window per stream and
	// connection: large enough for full-speed file transfers over the pipe,
	// small enough that a slow client holds little daemon memory.
	agentWindow = 1 << 20
	// agentIOBuffer is gRPC's read and write buffer on the agent
	// connection: a 256 KiB file chunk moves in one or two syscalls instead
	// of eight with the default 32 KiB, and in gVisor each is a host
	// context switch. Two per sandbox, so 16 sandboxes hold 8 MiB.
	agentIOBuffer = 256 << 10
)

// dialAgent runs a gRPC client over the pipe pair. onExit runs once when the
// connection's reader sees EOF or an error: the sandbox is gone.
func dialAgent(r, w *os.File, onExit func()) (*grpc.ClientConn, error) {
	conn := &watchedConn{Conn: stdioconn.New(r, w), onExit: onExit}
	var used sync.Once
	dialer := func(context.Context, string) (net.Conn, error) {
		var c net.Conn
		used.Do(func() { c = conn })
		if c == nil {
			// The one pipe pair is gone: the sandbox cannot be reached again.
			return nil, errors.New("sandbox agent connection is closed")
		}
		return c, nil
	}
	cc, err := grpc.NewClient("passthrough:///sandbox-agent",
		grpc.WithContextDialer(dialer),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(agentWindow),
		grpc.WithInitialConnWindowSize(agentWindow),
		grpc.WithReadBufferSize(agentIOBuffer),
		grpc.WithWriteBufferSize(agentIOBuffer),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxAgentMessage), grpc.MaxCallSendMsgSize(MaxAgentMessage)),
	)
	if err != nil {
		conn.Close()
		return nil, err
	}
	cc.Connect()
	return cc, nil
}

// watchedConn reports the first read error: the agent's stdout closed.
type watchedConn struct {
	*stdioconn.Conn
	once   sync.Once
	onExit func()
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.once.Do(c.onExit)
	}
	return n, err
}
