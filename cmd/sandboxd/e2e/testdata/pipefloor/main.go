// Command pipefloor measures the floor under the daemon <-> agent stage of
// an Exec: run as a sandbox's init by BenchmarkPipeFloor, it answers on its
// stdin/stdout either raw (each read is written back) or as a gRPC server
// (the health service) over the same pipes, on one Go thread as the agent
// does, so the two differ only by the protocol.
package main

import (
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/sandboxd/sandboxd/runtime/stdioconn"
)

// echoBuffer is larger than any request the benchmark sends.
const echoBuffer = 4096

func main() {
	runtime.GOMAXPROCS(1) // as the agent (cmd/sandbox-agent/main.go)
	for fd := 0; fd <= 1; fd++ {
		if err := syscall.SetNonblock(fd, true); err != nil {
			os.Exit(1)
		}
	}
	in, out := os.NewFile(0, "stdin"), os.NewFile(1, "stdout")
	if len(os.Args) == 2 && os.Args[1] == "grpc" {
		srv := grpc.NewServer()
		healthpb.RegisterHealthServer(srv, health.NewServer())
		_ = srv.Serve(&oneConn{c: exitOnEOF{stdioconn.New(in, out)}})
		return
	}
	buf := make([]byte, echoBuffer)
	for {
		n, err := in.Read(buf)
		if err != nil {
			return
		}
		if _, err := out.Write(buf[:n]); err != nil {
			return
		}
	}
}

// oneConn is a net.Listener that accepts c once, then blocks.
type oneConn struct {
	c    net.Conn
	once sync.Once
}

func (l *oneConn) Accept() (net.Conn, error) {
	var c net.Conn
	l.once.Do(func() { c = l.c })
	if c == nil {
		select {} // the connection exits the process when it ends
	}
	return c, nil
}

func (l *oneConn) Close() error   { return nil }
func (l *oneConn) Addr() net.Addr { return l.c.LocalAddr() }

// exitOnEOF ends the process once the benchmark closes the pipes.
type exitOnEOF struct{ *stdioconn.Conn }

func (c exitOnEOF) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		os.Exit(0)
	}
	return n, err
}
