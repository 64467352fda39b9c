// Package cleanup undoes acquisitions in reverse order, exactly once: each
// step of a multi-step setup pushes its undo, and whoever owns the result
// runs the stack on failure or teardown.
package cleanup

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Stack is a LIFO of undo functions. It is safe for concurrent use; Run runs
// every function once, even if called many times or concurrently.
type Stack struct {
	mu    sync.Mutex
	steps []step
	ran   bool
	err   error
}

type step struct {
	name string
	fn   func(context.Context) error
}

// Push adds an undo step. Pushing after Run runs the step at once, so a late
// acquisition is never leaked.
func (s *Stack) Push(name string, fn func(context.Context) error) {
	s.mu.Lock()
	if !s.ran {
		s.steps = append(s.steps, step{name, fn})
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	fn(context.Background())
}

// Run runs the steps in reverse order of Push. Every step runs even if an
// earlier one fails; the errors are joined. Later calls return the first
// result.
func (s *Stack) Run(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ran {
		return s.err
	}
	s.ran = true
	var errs []error
	for i := len(s.steps) - 1; i >= 0; i-- {
		if err := s.steps[i].fn(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.steps[i].name, err))
		}
	}
	s.steps = nil
	s.err = errors.Join(errs...)
	return s.err
}
