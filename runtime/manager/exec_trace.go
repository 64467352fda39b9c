package manager

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// Bounds on the stages an agent reports (it is untrusted): a real trace has
// fewer than ten stages with short names.
const (
	maxTraceStages    = 32
	maxTraceStageName = 128
)

// sanitizeTrace bounds the agent's stages: at most maxTraceStages, names
// clipped, durations valid and not negative.
func sanitizeTrace(in []*sandboxv1.ExecStage) []*sandboxv1.ExecStage {
	if len(in) == 0 {
		return nil
	}
	in = in[:min(len(in), maxTraceStages)]
	out := make([]*sandboxv1.ExecStage, 0, len(in))
	for _, st := range in {
		name := st.GetName()
		if len(name) > maxTraceStageName {
			name = name[:maxTraceStageName]
		}
		d := st.GetDuration()
		if d.CheckValid() != nil || d.AsDuration() < 0 {
			d = durationpb.New(0)
		}
		out = append(out, &sandboxv1.ExecStage{Name: name, Duration: d})
	}
	return out
}

// traceStages puts the daemon's stages around the agent's: the resume of a
// paused sandbox if the Exec had to wait for one (resumed > 0), the daemon's
// own work before it called the agent (received to called), the transport
// both ways (the time the daemon waited for the result minus what the
// agent accounted for), and its work after the result arrived, the host
// cgroup reads included.
func traceStages(resumed time.Duration, received, called time.Time, agent []*sandboxv1.ExecStage, usage *execUsage) []*sandboxv1.ExecStage {
	arrived := now()
	var inAgent time.Duration
	for _, st := range agent {
		inAgent += st.GetDuration().AsDuration()
	}
	usage.end()
	stage := func(name string, d time.Duration) *sandboxv1.ExecStage {
		return &sandboxv1.ExecStage{Name: name, Duration: durationpb.New(max(d, 0))}
	}
	var out []*sandboxv1.ExecStage
	if resumed > 0 {
		out = append(out, stage("daemon: resume the paused sandbox", resumed))
	}
	out = append(out,
		stage("daemon: check the request, start the cgroup counters", called.Sub(received)),
		stage("daemon <-> agent: gRPC over the init's pipes, both ways", arrived.Sub(called)-inAgent),
	)
	out = append(out, agent...)
	return append(out, stage("daemon: read the cgroup counters, build the result", now().Sub(arrived)))
}
