package main

// This file pumps a child's stdout and stderr pipes into the Exec stream:
// one reader goroutine per pipe appends what it reads to a small pending
// buffer, and one sender goroutine sends each buffer's whole content as one
// event. While a Send is in flight the readers keep filling the buffers, so
// a child's many small writes leave as few large messages (a message costs
// about a millisecond in gVisor), and a full buffer stops its reader, so a
// slow daemon back-pressures the child through its pipe instead of making
// the agent buffer.

import (
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// outputChunk is the most read from a pipe at once and the most one pipe's
// pending buffer holds, so the largest output message: big enough that
// per-message costs vanish, well under maxMessage.
const outputChunk = 256 << 10

// outputPipeSize is the capacity the output pipes are given (Linux's and
// gVisor's pipe-max-size): a child can write this much while the agent
// lingers or sends, before it blocks. Back-pressure still bounds it.
const outputPipeSize = 1 << 20

// outputLinger is how long a reader pauses after a small read before it
// reads again, so that a child's many small writes gather in the pipe and
// leave in one read. In gVisor every read, wakeup and message costs tens of
// microseconds of syscalls, so reading each print separately made a loop of
// 100k prints take tens of seconds; 2 ms of added latency is not visible to
// anyone watching output.
const outputLinger = 2 * time.Millisecond

// output carries the output of one Exec to its stream.
type output struct {
	stream grpc.ServerStreamingServer[sandboxv1.ExecEvent]
	files  []*os.File
	sent   chan struct{} // closed when the sender has exited
	eof    chan struct{} // closed when every reader has ended
	rush   chan struct{} // closed by hurry: readers linger no more
	once   sync.Once

	mu      sync.Mutex
	cond    *sync.Cond // signals pending data, freed room, ended readers
	pending [2][]byte  // stdout, stderr: read but not yet sent
	readers int        // readers still running
	closing bool       // close was called: send what is pending, then exit
}

// newOutput starts the sender for stream.
func newOutput(stream grpc.ServerStreamingServer[sandboxv1.ExecEvent]) *output {
	o := &output{stream: stream, sent: make(chan struct{}), eof: make(chan struct{}), rush: make(chan struct{})}
	o.cond = sync.NewCond(&o.mu)
	go o.send()
	return o
}

// start reads the read ends of the child's stdout and stderr pipes until EOF
// or stop. It takes ownership of both files.
func (o *output) start(stdout, stderr *os.File) {
	o.files = []*os.File{stdout, stderr}
	o.mu.Lock()
	o.readers = len(o.files)
	o.mu.Unlock()
	for i, f := range o.files {
		go o.read(i, f)
	}
}

// read appends what it reads from f to pending[i], waiting for room.
func (o *output) read(i int, f *os.File) {
	buf := make([]byte, outputChunk)
	for {
		n, err := f.Read(buf)
		o.mu.Lock()
		for n > 0 && len(o.pending[i])+n > outputChunk {
			o.cond.Wait()
		}
		o.pending[i] = append(o.pending[i], buf[:n]...)
		if err != nil {
			o.readers--
			if o.readers == 0 {
				close(o.eof)
			}
		}
		o.cond.Broadcast()
		o.mu.Unlock()
		if err != nil {
			return
		}
		if n < outputChunk/2 {
			select {
			case <-time.After(outputLinger):
			case <-o.rush:
			}
		}
	}
}

// send streams the pending buffers until close. After a failed Send (the
// client is gone and the Exec's context is cancelled) it keeps emptying
// them, so the readers never block on a dead stream.
func (o *output) send() {
	defer close(o.sent)
	var err error
	for {
		o.mu.Lock()
		for len(o.pending[0]) == 0 && len(o.pending[1]) == 0 && !o.closing {
			o.cond.Wait()
		}
		stdout, stderr := o.pending[0], o.pending[1]
		o.pending[0], o.pending[1] = nil, nil
		done := o.closing
		o.cond.Broadcast()
		o.mu.Unlock()
		if len(stdout) > 0 && err == nil {
			err = o.stream.Send(&sandboxv1.ExecEvent{Event: &sandboxv1.ExecEvent_Stdout{Stdout: stdout}})
		}
		if len(stderr) > 0 && err == nil {
			err = o.stream.Send(&sandboxv1.ExecEvent{Event: &sandboxv1.ExecEvent_Stderr{Stderr: stderr}})
		}
		if done {
			return
		}
	}
}

// hurry tells the readers that the code has finished, so that they read to
// EOF without lingering, which would only delay the result.
func (o *output) hurry() { o.once.Do(func() { close(o.rush) }) }

// done is closed once both pipes have hit EOF.
func (o *output) done() <-chan struct{} { return o.eof }

// pipeCloseDelay is how long after stop the pipes are closed: late enough
// that the Exec's result is on its way first (closing two pipes is four
// syscalls, ~0.5 ms in gVisor), soon enough that a process still writing
// gets EPIPE at once for any purpose.
const pipeCloseDelay = 5 * time.Millisecond

// stop waits up to grace for both pipes to hit EOF, then stops reading them
// and, pipeCloseDelay later, closes them, so processes still writing get
// EPIPE. Call it once, after start.
func (o *output) stop(grace time.Duration) {
	o.hurry()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-o.eof:
	case <-t.C:
		for _, f := range o.files {
			_ = f.SetReadDeadline(time.Now())
		}
		<-o.eof
	}
	files := o.files
	time.AfterFunc(pipeCloseDelay, func() {
		for _, f := range files {
			f.Close()
		}
	})
}

// close sends what is pending and stops the sender. Call it after stop (or
// without start) and before sending the result, which then goes last.
func (o *output) close() {
	o.mu.Lock()
	o.closing = true
	o.cond.Broadcast()
	o.mu.Unlock()
	<-o.sent
}

// growPipe raises the capacity of the pipe with fd to outputPipeSize, if it
// may: a smaller pipe only makes the output slower. The pipes' makers call
// it, so that a cell's pipes are grown before the cell, off its path.
func growPipe(fd int) {
	_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETPIPE_SZ, outputPipeSize)
}
