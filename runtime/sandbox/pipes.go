package sandbox

import (
	"fmt"
	"os"
)

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
