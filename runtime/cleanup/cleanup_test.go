package cleanup

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
)

// TestRunsInReverseExactlyOnce guarantees LIFO order, that a failing step
// does not stop the others, and that concurrent Runs undo nothing twice.
func TestRunsInReverseExactlyOnce(t *testing.T) {
	var s Stack
	var mu sync.Mutex
	var order []string
	for _, name := range []string{"a", "b", "c"} {
		s.Push(name, func(context.Context) error {
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			if name == "b" {
				return errors.New("boom")
			}
			return nil
		})
	}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = s.Run(context.Background()) })
	}
	wg.Wait()
	if got := strings.Join(order, ""); got != "cba" {
		t.Fatalf("order %q, want cba", got)
	}
	for _, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "b: boom") {
			t.Fatalf("Run error %v, want b: boom", err)
		}
	}
}

// TestPushAfterRunRunsAtOnce guarantees that something acquired after
// teardown started is released rather than leaked.
func TestPushAfterRunRunsAtOnce(t *testing.T) {
	var s Stack
	s.Run(context.Background())
	ran := false
	s.Push("late", func(context.Context) error { ran = true; return nil })
	if !ran {
		t.Fatal("late step did not run")
	}
}
