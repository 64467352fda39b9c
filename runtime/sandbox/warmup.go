package sandbox

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// warmupTimeout bounds the warm-up cell: importing the whole scientific
// stack takes ~1 s in gVisor; a minute means something is wrong.
const warmupTimeout = time.Minute

// maxWarmupOutput bounds what is kept of the warm-up's stderr for the error.
const maxWarmupOutput = 2048

// warmupCode returns the Python cell that imports modules, or "" for none.
// Module names come from a validated policy (dotted identifiers).
func warmupCode(modules []string) string {
	if len(modules) == 0 {
		return ""
	}
	return "import " + strings.Join(modules, ", ")
}

// restoreProbe returns the first cell of a restored clone. Every clone of
// an image starts from the same memory, so it reseeds what the template's
// interpreter had seeded: random's global generator, numpy.random's global
// state and tempfile's name sequence (os.urandom, uuid4, secrets and
// numpy's default_rng() read fresh host entropy on each call already).
// Then it fails unless the warm imports are loaded: a boot's readiness
// probe, for a restore. It prints a line, so the output path (the cell's
// stdout, the agent's readers, the stream) is mapped in before a client's
// first Exec, and with prefault it walks the heap (see Config.Prefault).
// It leaves no name in the cells' namespace.
func restoreProbe(modules []string, prefault bool) string {
	quoted := make([]string, len(modules))
	for i, m := range modules {
		quoted[i] = "'" + m + "'" // validated dotted identifiers: no quoting needed
	}
	walk := ""
	if prefault {
		walk = "    __import__('gc').collect()\n"
	}
	return `def __sandboxd_restored():
    import random, sys, tempfile
    random.seed()
    if 'numpy.random' in sys.modules:
        sys.modules['numpy.random'].seed()
    tempfile._name_sequence = None
    missing = [m for m in [` + strings.Join(quoted, ", ") + `] if m not in sys.modules]
    if missing:
        raise ImportError('warm imports not loaded after restore: ' + ', '.join(missing))
    print('ready')
` + walk + `try:
    __sandboxd_restored()
finally:
    del __sandboxd_restored
`
}

// warmup runs code in the Python worker and requires it to succeed: it is
// the readiness probe of a warm sandbox.
func (s *Sandbox) warmup(ctx context.Context, code string) error {
	ctx, cancel := context.WithTimeout(ctx, warmupTimeout)
	defer cancel()
	stream, err := s.agent.Exec(ctx, &sandboxv1.ExecRequest{
		Language: sandboxv1.Language_LANGUAGE_PYTHON, Code: code, Timeout: durationpb.New(warmupTimeout),
	})
	if err != nil {
		return fmt.Errorf("warming up: %w", err)
	}
	var stderr strings.Builder
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			return fmt.Errorf("warming up: no result from the agent")
		}
		if err != nil {
			return fmt.Errorf("warming up: %w", err)
		}
		if e := ev.GetStderr(); e != nil && stderr.Len() < maxWarmupOutput {
			stderr.Write(e[:min(len(e), maxWarmupOutput-stderr.Len())])
		}
		if r := ev.GetResult(); r != nil {
			if r.GetStatus() != sandboxv1.ExecStatus_EXEC_STATUS_OK {
				return fmt.Errorf("warm-up %q failed (%v): %s", code, r.GetStatus(), strings.TrimSpace(stderr.String()))
			}
			return nil
		}
	}
}
