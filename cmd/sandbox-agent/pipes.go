package main

// This file creates the pipes of an Exec and makes sure none leaks.

import (
	"os"

	"golang.org/x/sys/unix"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// pipeSet remembers the pipes it made so that closeAll can close every end
// still open, whatever path the Exec took. Closing an end twice is harmless.
type pipeSet struct {
	files []*os.File
}

// pipe returns a new pipe whose ends pipeSet closes at the latest in closeAll.
func (s *pipeSet) pipe() (r, w *os.File, err error) {
	r, w, err = os.Pipe()
	if err != nil {
		return nil, nil, status.Errorf(codes.Internal, "creating a pipe: %v", err)
	}
	s.files = append(s.files, r, w)
	return r, w, nil
}

// closeAll closes both ends of every pipe.
func (s *pipeSet) closeAll() {
	for _, f := range s.files {
		f.Close()
	}
}

// outputPipes returns a child's stdout and stderr pipes: the read ends for
// the agent, the write ends for the child.
func (s *pipeSet) outputPipes() (outR, outW, errR, errW *os.File, err error) {
	if outR, outW, err = s.pipe(); err != nil {
		return nil, nil, nil, nil, err
	}
	if errR, errW, err = s.pipe(); err != nil {
		return nil, nil, nil, nil, err
	}
	for _, f := range []*os.File{outR, errR} {
		if sc, err := f.SyscallConn(); err == nil {
			_ = sc.Control(func(fd uintptr) { growPipe(int(fd)) })
		}
	}
	return outR, outW, errR, errW, nil
}

// cellPipes are a cell's stdout and stderr pipes: the read ends for the
// agent, served by Go's poller, the write ends plain fds for the kernel.
type cellPipes struct {
	outR, errR *os.File
	outW, errW int
}

// newCellPipes makes a cell's pipes.
func newCellPipes() (*cellPipes, error) {
	var s pipeSet
	outR, outW, err := s.childPipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := s.childPipe()
	if err != nil {
		outR.Close()
		unix.Close(outW)
		return nil, err
	}
	return &cellPipes{outR: outR, errR: errR, outW: outW, errW: errW}, nil
}

// close closes all four ends.
func (p *cellPipes) close() {
	p.outR.Close()
	p.errR.Close()
	unix.Close(p.outW)
	unix.Close(p.errW)
}

// childPipe returns a pipe whose read end the agent reads through Go's
// poller and whose write end is a plain blocking fd for a child (the
// Python kernel), which the caller passes on and then closes with
// unix.Close. It costs fewer syscalls than os.Pipe, which makes both ends
// non-blocking and registers both with the poller; in gVisor every
// syscall counts. The read end is closed at the latest in closeAll.
func (s *pipeSet) childPipe() (r *os.File, w int, err error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		return nil, -1, status.Errorf(codes.Internal, "creating a pipe: %v", err)
	}
	growPipe(fds[0])
	// One F_SETFL: a new pipe end has no other status flag to keep.
	if _, err := unix.FcntlInt(uintptr(fds[0]), unix.F_SETFL, unix.O_NONBLOCK); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, -1, status.Errorf(codes.Internal, "creating a pipe: %v", err)
	}
	r = os.NewFile(uintptr(fds[0]), "|0")
	s.files = append(s.files, r)
	return r, fds[1], nil
}
