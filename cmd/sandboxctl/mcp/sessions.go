package mcp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// destroyTimeout bounds the DestroySandbox of a session that ended: a
// destroy takes well under a second, and a daemon that hangs must not keep
// sandboxctl from exiting (the daemon's idle timeout reaps what is left).
const destroyTimeout = 30 * time.Second

// errShuttingDown refuses tool calls that arrive while the server stops.
var errShuttingDown = errors.New("the MCP server is shutting down")

// errSessionEnded refuses a call that races with the end of its session.
var errSessionEnded = errors.New("the MCP session has ended")

// sandboxes gives each MCP session a sandbox of its own: created from the
// template's pool at the session's first call that needs one, destroyed
// when the session ends (or by reset_sandbox, after which the next call
// creates a fresh one).
type sandboxes struct {
	client  sandboxv1.SandboxServiceClient
	request *sandboxv1.CreateSandboxRequest // cloned for each CreateSandbox
	note    func(string)

	// stopping is cancelled when the server stops: it ends the calls under
	// way (see bound), which the shutdown would otherwise wait for.
	stopping context.Context
	stop     context.CancelFunc

	mu     sync.Mutex
	closed bool // the server is stopping: no session gets a sandbox any more
	slots  map[*mcpsdk.ServerSession]*slot
	ending sync.WaitGroup // releases of slots taken out of the map
}

// slot is the sandbox of one session.
type slot struct {
	// token is held while a call looks up, creates or destroys the
	// sandbox, so that concurrent calls create it once. A channel rather
	// than a mutex, so that a call waiting for it gives up when its
	// context ends.
	token chan struct{}
	// Both guarded by token.
	id    string // the sandbox; empty until the first call and after a reset
	ended bool   // the session ended: no sandbox may be created any more
}

// newSandboxes returns the sandboxes of sessions that client creates with
// request; note receives one line per sandbox created or destroyed.
func newSandboxes(client sandboxv1.SandboxServiceClient, request *sandboxv1.CreateSandboxRequest, note func(string)) *sandboxes {
	stopping, stop := context.WithCancel(context.Background())
	return &sandboxes{
		client: client, request: request, note: note,
		stopping: stopping, stop: stop,
		slots: map[*mcpsdk.ServerSession]*slot{},
	}
}

// bound returns ctx, for a tool call, cancelled also when the server stops.
func (s *sandboxes) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.stopping, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// lock takes sl's token, or fails when ctx ends first.
func (sl *slot) lock(ctx context.Context) error {
	select {
	case sl.token <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// unlock gives sl's token back.
func (sl *slot) unlock() { <-sl.token }

// slot returns the slot of ss, making it on the session's first call and
// starting to watch for the session's end, which releases it.
func (s *sandboxes) slot(ss *mcpsdk.ServerSession) (*slot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errShuttingDown
	}
	if sl := s.slots[ss]; sl != nil {
		return sl, nil
	}
	sl := &slot{token: make(chan struct{}, 1)}
	s.slots[ss] = sl
	go func() {
		ss.Wait()
		s.end(ss)
	}()
	return sl, nil
}

// get returns the sandbox of ss, creating it if the session has none.
// Concurrent calls of one session wait for a single creation.
func (s *sandboxes) get(ctx context.Context, ss *mcpsdk.ServerSession) (*slot, string, error) {
	sl, err := s.slot(ss)
	if err != nil {
		return nil, "", err
	}
	if err := sl.lock(ctx); err != nil {
		return nil, "", err
	}
	defer sl.unlock()
	switch {
	case sl.ended:
		return nil, "", errSessionEnded
	case sl.id != "":
		return sl, sl.id, nil
	}
	sb, err := s.client.CreateSandbox(ctx, proto.CloneOf(s.request))
	if err != nil {
		return nil, "", err
	}
	sl.id = sb.GetSandboxId()
	msg := fmt.Sprintf("created sandbox %s (%s)", sl.id, startName(sb.GetStart()))
	if ss.ID() != "" {
		msg += " for session " + ss.ID()
	}
	s.note(msg)
	return sl, sl.id, nil
}

// startName says how a sandbox came to be, for notes.
func startName(k sandboxv1.StartKind) string {
	switch k {
	case sandboxv1.StartKind_START_KIND_POOL:
		return "from the pool"
	case sandboxv1.StartKind_START_KIND_RESTORE:
		return "restored from the snapshot"
	case sandboxv1.StartKind_START_KIND_BOOT:
		return "booted"
	}
	return "started"
}

// reset destroys the sandbox of ss, if it has one, and returns its ID; the
// session's next call creates a fresh sandbox.
func (s *sandboxes) reset(ctx context.Context, ss *mcpsdk.ServerSession) (string, error) {
	sl, err := s.slot(ss)
	if err != nil {
		return "", err
	}
	if err := sl.lock(ctx); err != nil {
		return "", err
	}
	defer sl.unlock()
	id := sl.id
	if id == "" {
		return "", nil
	}
	if _, err := s.client.DestroySandbox(ctx, &sandboxv1.DestroySandboxRequest{SandboxId: id}); err != nil {
		return "", err
	}
	sl.id = ""
	s.note("destroyed sandbox " + id + " (reset_sandbox)")
	return id, nil
}

// lost tells, after a call on sandbox id of slot sl failed, whether the
// sandbox itself is gone: destroyed by the daemon (idle timeout, lifetime)
// or someone else, or dead (out of memory, crashed). Then the slot forgets
// it, so that the session's next call creates a fresh sandbox, and lost
// returns a sentence for the model saying so; otherwise "".
func (s *sandboxes) lost(ctx context.Context, sl *slot, id string) string {
	sb, err := s.client.GetSandbox(ctx, &sandboxv1.GetSandboxRequest{SandboxId: id})
	var why string
	switch {
	case status.Code(err) == codes.NotFound:
		why = "it was destroyed (its idle timeout or lifetime passed, or someone destroyed it)"
	case err == nil && sb.GetState() == sandboxv1.SandboxState_SANDBOX_STATE_DEAD:
		why = "it died"
		if r := sb.GetStateReason(); r != "" {
			why += " (" + r + ")"
		}
		// A dead sandbox's record stays until destroyed; it holds nothing.
		s.destroy(id)
	default:
		return ""
	}
	if err := sl.lock(ctx); err != nil {
		return ""
	}
	if sl.id == id {
		sl.id = ""
	}
	sl.unlock()
	return fmt.Sprintf("This session's sandbox %s is gone: %s. Its files, variables and processes are lost; the next call gets a fresh sandbox.", id, why)
}

// end releases the slot of ss, once the session has ended.
func (s *sandboxes) end(ss *mcpsdk.ServerSession) {
	s.mu.Lock()
	sl := s.slots[ss]
	if sl != nil {
		delete(s.slots, ss)
		s.ending.Add(1)
	}
	s.mu.Unlock()
	if sl != nil {
		defer s.ending.Done()
		s.release(sl)
	}
}

// closeAll ends the calls under way, releases the slots of every session,
// in parallel, refuses new ones, and returns once the sandboxes of all
// sessions, ended or not, are destroyed. It may be called more than once.
func (s *sandboxes) closeAll() {
	s.stop()
	s.mu.Lock()
	s.closed = true
	all := slices.Collect(maps.Values(s.slots))
	clear(s.slots)
	s.ending.Add(len(all))
	s.mu.Unlock()
	for _, sl := range all {
		go func() {
			defer s.ending.Done()
			s.release(sl)
		}()
	}
	s.ending.Wait()
}

// release marks sl ended and destroys its sandbox. It waits for a creation
// under way, so that the sandbox it makes is destroyed too.
func (s *sandboxes) release(sl *slot) {
	sl.token <- struct{}{}
	id := sl.id
	sl.id, sl.ended = "", true
	sl.unlock()
	if id != "" {
		s.destroy(id)
	}
}

// destroy destroys sandbox id within destroyTimeout, noting the outcome.
func (s *sandboxes) destroy(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), destroyTimeout)
	defer cancel()
	if _, err := s.client.DestroySandbox(ctx, &sandboxv1.DestroySandboxRequest{SandboxId: id}); err != nil {
		s.note(fmt.Sprintf("destroying sandbox %s: %v", id, status.Convert(err).Message()))
		return
	}
	s.note("destroyed sandbox " + id)
}
