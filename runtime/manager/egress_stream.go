package manager

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	agentv1 "github.com/sandboxd/sandboxd/proto/agent/v1"
	"github.com/sandboxd/sandboxd/runtime/egress"
	"github.com/sandboxd/sandboxd/runtime/errdefs"
)

// maxRelayChunk is the most data one EgressFrame to the agent carries: the
// agent's own frame size, large enough that a bulk transfer costs few
// messages and far below the gRPC message limit and flow-control window.
const maxRelayChunk = 32 << 10

// relayLinger bounds how long closing a relay waits for the agent to end
// the stream after the daemon stopped sending: the agent delivers the last
// frames to the client, half-closes it and ends the stream within
// milliseconds once the client closes, while a client that never closes
// holds its connection slot no longer than this.
const relayLinger = 5 * time.Second

// errRelayWriteClosed is a write after CloseWrite or Close.
var errRelayWriteClosed = errors.New("writing to the sandbox after its relay stopped sending")

// relayStream is the daemon's end of one EgressRelay stream as an
// egress.Conn: Read returns what the sandbox's client sent, Write sends to
// it, CloseWrite sends eof (the agent then half-closes the client's
// connection). Read is for one goroutine, Write and CloseWrite for
// another, as egress.Relay uses them; Close may come from either.
type relayStream struct {
	stream agentv1.AgentService_EgressRelayClient
	// cancel ends the stream.
	cancel context.CancelFunc
	// traffic is called as bytes pass either way, so that a transfer
	// keeps its sandbox from counting as idle.
	traffic func()

	// frames carries the agent's data to Read; it is closed at the
	// agent's eof or when the stream ends, and readErr then says which
	// (io.EOF, or the stream's failure).
	frames  chan []byte
	readErr error
	// rest is the unread part of the last frame; Read's own.
	rest []byte
	// stopping is closed by Close: data no one will read is dropped.
	stopping chan struct{}
	// done is closed once the stream has ended.
	done chan struct{}

	sendMu     sync.Mutex
	sendClosed bool
	closeOnce  sync.Once
}

var _ egress.Conn = (*relayStream)(nil)

// newRelayStream wraps stream, which cancel ends, and starts receiving;
// traffic is called as bytes pass.
func newRelayStream(stream agentv1.AgentService_EgressRelayClient, cancel context.CancelFunc, traffic func()) *relayStream {
	s := &relayStream{stream: stream, cancel: cancel, traffic: traffic, frames: make(chan []byte), stopping: make(chan struct{}), done: make(chan struct{})}
	go s.receive()
	return s
}

// receive passes the agent's data frames to Read until the agent's eof,
// then discards anything more, until the stream ends.
func (s *relayStream) receive() {
	defer close(s.done)
	open := true
	end := func(err error) {
		if open {
			s.readErr, open = err, false
			close(s.frames)
		}
	}
	for {
		f, err := s.stream.Recv()
		switch {
		case err == io.EOF:
			end(io.EOF)
			return
		case err != nil:
			end(fmt.Errorf("receiving from the sandbox's proxy: %w", errdefs.FromGRPC(err)))
			return
		case !open:
			continue // past eof: nothing more belongs to the connection
		}
		if data := f.GetData(); len(data) > 0 {
			select {
			case s.frames <- data:
			case <-s.stopping:
			}
		}
		if f.GetEof() {
			end(io.EOF)
		}
	}
}

// verdict sends the first frame: the connection the stream is for, and
// whether it may proceed or why not.
func (s *relayStream) verdict(id uint64, allowed bool, reason string) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if err := s.stream.Send(&agentv1.EgressFrame{Id: id, Allowed: allowed, Reason: reason}); err != nil {
		return fmt.Errorf("sending the verdict to the sandbox's proxy: %w", err)
	}
	return nil
}

// Read reads what the sandbox's client sent.
func (s *relayStream) Read(p []byte) (int, error) {
	if len(s.rest) == 0 {
		data, ok := <-s.frames
		if !ok {
			return 0, s.readErr
		}
		s.rest = data
		s.traffic()
	}
	n := copy(p, s.rest)
	s.rest = s.rest[n:]
	return n, nil
}

// Write sends p to the sandbox's client in frames of at most
// maxRelayChunk bytes.
func (s *relayStream) Write(p []byte) (int, error) {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if s.sendClosed {
		return 0, errRelayWriteClosed
	}
	s.traffic()
	n := 0
	for n < len(p) {
		// A copy: gRPC may still use a message after Send returns, and the
		// caller reuses p.
		chunk := bytes.Clone(p[n:min(len(p), n+maxRelayChunk)])
		if err := s.stream.Send(&agentv1.EgressFrame{Data: chunk}); err != nil {
			return n, fmt.Errorf("sending to the sandbox's proxy: %w", err)
		}
		n += len(chunk)
	}
	return n, nil
}

// CloseWrite tells the sandbox's client that no more data follows.
func (s *relayStream) CloseWrite() error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if s.sendClosed {
		return nil
	}
	s.sendClosed = true
	if err := s.stream.Send(&agentv1.EgressFrame{Eof: true}); err != nil {
		return fmt.Errorf("sending eof to the sandbox's proxy: %w", err)
	}
	if err := s.stream.CloseSend(); err != nil {
		return fmt.Errorf("sending eof to the sandbox's proxy: %w", err)
	}
	return nil
}

// Close stops sending (the agent then half-closes the client's connection)
// and waits, at most relayLinger, until the agent ends the stream, before
// it cancels the stream: cancelling at once could drop the frames still on
// their way, the verdict or the end of a response. Close is idempotent.
func (s *relayStream) Close() error {
	s.closeOnce.Do(func() {
		close(s.stopping)
		// Cancelling also ends a Send blocked on flow control, which holds
		// sendMu.
		linger := time.AfterFunc(relayLinger, s.cancel)
		defer linger.Stop()
		s.sendMu.Lock()
		if !s.sendClosed {
			s.sendClosed = true
			_ = s.stream.CloseSend() // fails only once the stream is gone
		}
		s.sendMu.Unlock()
		<-s.done
		s.cancel()
	})
	return nil
}
