package sandbox

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// stdioPipeSize is the capacity given to the daemon<->agent pipes: Linux's
// default pipe-max-size, 16 times the default 64 KiB, so a 256 KiB file
// chunk crosses in one write and one read instead of several, each a
// context switch through gVisor.
const stdioPipeSize = 1 << 20

// pipes are the sandbox init's stdio: the init reads inR and writes outW and
// errW; the daemon writes inW and reads outR and errR.
type pipes struct {
	inR, inW   *os.File
	outR, outW *os.File
	errR, errW *os.File
}

func newPipes() (*pipes, error) {
	var p pipes
	var err error
	if p.inR, p.inW, err = os.Pipe(); err != nil {
		return nil, fmt.Errorf("creating stdin pipe: %w", err)
	}
	if p.outR, p.outW, err = os.Pipe(); err != nil {
		p.inR.Close()
		p.inW.Close()
		return nil, fmt.Errorf("creating stdout pipe: %w", err)
	}
	if p.errR, p.errW, err = os.Pipe(); err != nil {
		p.inR.Close()
		p.inW.Close()
		p.outR.Close()
		p.outW.Close()
		return nil, fmt.Errorf("creating stderr pipe: %w", err)
	}
	for _, f := range []*os.File{p.inW, p.outW} {
		// Best effort: an unprivileged or tighter pipe-max-size keeps the
		// default capacity, which works, only slower. Control, unlike Fd,
		// keeps the file non-blocking for the poller.
		if sc, err := f.SyscallConn(); err == nil {
			_ = sc.Control(func(fd uintptr) { _, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, stdioPipeSize) })
		}
	}
	return &p, nil
}

// closeTheirs closes the daemon's copies of the init's ends, once runsc
// create has handed them to the sandbox: then EOF on outR means the sandbox
// is gone.
func (p *pipes) closeTheirs() {
	p.inR.Close()
	p.outW.Close()
	p.errW.Close()
}

// closeOurs closes the daemon's ends (closing twice is harmless).
func (p *pipes) closeOurs() {
	p.closeTheirs()
	p.inW.Close()
	p.outR.Close()
	p.errR.Close()
}
