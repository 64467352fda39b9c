package main

// This file times the stages of one Exec when the request asks for a trace
// (ExecRequest.trace): each mark ends a stage, so the stages add up to the
// Exec's duration at the agent.

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// stageClock records the stages of one Exec; a nil clock records nothing,
// so untraced Execs pay one nil check per mark.
type stageClock struct {
	last   time.Time
	stages []*sandboxv1.ExecStage
}

// newStageClock starts a clock at start when on.
func newStageClock(start time.Time, on bool) *stageClock {
	if !on {
		return nil
	}
	return &stageClock{last: start}
}

// mark ends the current stage, named name.
func (c *stageClock) mark(name string) {
	if c == nil {
		return
	}
	now := time.Now()
	c.add(name, now.Sub(c.last))
	c.last = now
}

// markSplit ends the current stage as two: part (measured elsewhere, e.g.
// by the interpreter) named inner, and the rest named outer.
func (c *stageClock) markSplit(outer, inner string, part time.Duration) {
	if c == nil {
		return
	}
	now := time.Now()
	total := now.Sub(c.last)
	part = min(max(part, 0), total)
	c.add(outer, total-part)
	c.add(inner, part)
	c.last = now
}

func (c *stageClock) add(name string, d time.Duration) {
	c.stages = append(c.stages, &sandboxv1.ExecStage{Name: name, Duration: durationpb.New(d)})
}

// result returns the stages recorded, nil for a nil clock.
func (c *stageClock) result() []*sandboxv1.ExecStage {
	if c == nil {
		return nil
	}
	return c.stages
}
