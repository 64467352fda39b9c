package manager

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

func stdout(s string) *sandboxv1.ExecEvent {
	return &sandboxv1.ExecEvent{Event: &sandboxv1.ExecEvent_Stdout{Stdout: []byte(s)}}
}

func stderr(s string) *sandboxv1.ExecEvent {
	return &sandboxv1.ExecEvent{Event: &sandboxv1.ExecEvent_Stderr{Stderr: []byte(s)}}
}

// TestClipOutputNeverExceedsTheBudget guarantees that the client receives at
// most limits.output bytes across stdout and stderr, cut at the exact byte,
// and that going over is signalled.
func TestClipOutputNeverExceedsTheBudget(t *testing.T) {
	budget := int64(10)
	var got string
	for _, ev := range []*sandboxv1.ExecEvent{stdout("abcd"), stderr("efgh"), stdout("ijklmn"), stderr("zz")} {
		var out *sandboxv1.ExecEvent
		out, budget = clipOutput(ev, budget)
		if out != nil {
			got += string(out.GetStdout()) + string(out.GetStderr())
		}
	}
	if got != "abcdefghij" || budget >= 0 {
		t.Fatalf("got %q budget %d, want the first 10 bytes and a negative budget", got, budget)
	}
	out, left := clipOutput(stdout("1234"), 4)
	if string(out.GetStdout()) != "1234" || left != 0 {
		t.Fatalf("output exactly at the limit must pass whole: %v %d", out, left)
	}
	if out, _ := clipOutput(stderr("x"), 0); out != nil {
		t.Fatalf("an exhausted budget let %v through", out)
	}
}

// TestCheckEnvRejectsBadNames guarantees per-Exec environment validation.
func TestCheckEnvRejectsBadNames(t *testing.T) {
	for _, env := range []map[string]string{{"": "x"}, {"1A": "x"}, {"A-B": "x"}, {"A": "x\x00y"}} {
		if err := checkEnv(env); err == nil {
			t.Errorf("checkEnv(%q) accepted", env)
		}
	}
	if err := checkEnv(map[string]string{"A_1": "x", "_b": ""}); err != nil {
		t.Errorf("valid env rejected: %v", err)
	}
}

// TestSanitizeTraceBoundsAgentStages guarantees that a hostile agent's
// trace cannot grow the daemon's answer or carry nonsense: at most
// maxTraceStages stages, names clipped, negative or invalid durations
// zeroed.
func TestSanitizeTraceBoundsAgentStages(t *testing.T) {
	var in []*sandboxv1.ExecStage
	for range maxTraceStages + 10 {
		in = append(in, &sandboxv1.ExecStage{Name: strings.Repeat("x", 1000), Duration: durationpb.New(-time.Second)})
	}
	in[0].Duration = &durationpb.Duration{Seconds: 1, Nanos: -5} // invalid
	out := sanitizeTrace(in)
	if len(out) != maxTraceStages {
		t.Fatalf("%d stages, want %d", len(out), maxTraceStages)
	}
	for _, st := range out {
		if len(st.Name) != maxTraceStageName || st.Duration.AsDuration() != 0 {
			t.Fatalf("stage %d bytes, %v", len(st.Name), st.Duration.AsDuration())
		}
	}
	if sanitizeTrace(nil) != nil {
		t.Fatal("no stages must stay none")
	}
}

// TestTraceStagesIncludeResume guarantees that the trace of an Exec that
// resumed a paused sandbox starts with that resume, and that of one that
// did not has no such stage.
func TestTraceStagesIncludeResume(t *testing.T) {
	received := now()
	called := received.Add(time.Millisecond)
	for _, tc := range []struct {
		resumed time.Duration
		first   string
	}{
		{300 * time.Millisecond, "daemon: resume the paused sandbox"},
		{0, "daemon: check the request, start the cgroup counters"},
	} {
		got := traceStages(tc.resumed, received, called, nil, &execUsage{})
		if got[0].GetName() != tc.first {
			t.Errorf("resumed %v: first stage %q, want %q", tc.resumed, got[0].GetName(), tc.first)
		}
		if tc.resumed > 0 && got[0].GetDuration().AsDuration() != tc.resumed {
			t.Errorf("resume stage %v, want %v", got[0].GetDuration().AsDuration(), tc.resumed)
		}
	}
}
