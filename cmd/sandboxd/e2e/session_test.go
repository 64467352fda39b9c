package e2e

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// session runs code in the sandbox's bash session.
func session(t testing.TB, d *daemon, id, code string, timeout time.Duration) execResult {
	t.Helper()
	return d.run(t, id, sandboxv1.Language_LANGUAGE_BASH_SESSION, code, timeout)
}

// TestBashSessionKeepsStateAcrossExecsAndTimeouts guarantees, in a real
// sandbox, that a bash session keeps its directory and exported variables
// from one Exec to the next, and that a timeout stops the command within
// about a second and keeps the session and its state.
func TestBashSessionKeepsStateAcrossExecsAndTimeouts(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	id := d.create(t)
	wantOK(t, session(t, d, id, "cd /tmp; export A=1", time.Minute))
	r := session(t, d, id, "pwd; echo $A", time.Minute)
	wantOK(t, r)
	if r.stdout != "/tmp\n1\n" || r.result.StateLost {
		t.Fatalf("stdout %q state_lost %v", r.stdout, r.result.StateLost)
	}
	for _, code := range []string{"sleep 100; echo after", "while :; do :; done"} {
		start := time.Now()
		r = session(t, d, id, code, time.Second)
		took := time.Since(start)
		if r.result.Status != sandboxv1.ExecStatus_EXEC_STATUS_TIMEOUT || r.result.StateLost || r.stdout != "" || took > 3*time.Second {
			t.Fatalf("%q: %v after %v, stdout %q", code, r.result, took, r.stdout)
		}
		r = session(t, d, id, "echo $A; pwd", time.Minute)
		wantOK(t, r)
		if r.stdout != "1\n/tmp\n" || r.result.StateLost {
			t.Fatalf("after the timeout of %q: stdout %q state_lost %v", code, r.stdout, r.result.StateLost)
		}
	}
	req := &sandboxv1.ExecRequest{Language: sandboxv1.Language_LANGUAGE_BASH_SESSION, Code: "echo ${A-gone}; pwd", RestartSession: true,
		Timeout: durationpb.New(time.Minute)}
	r, err := d.tryRun(ctx(t), id, req)
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, r)
	if r.stdout != "gone\n/workspace\n" || !r.result.StateLost {
		t.Fatalf("after restart_session: stdout %q state_lost %v", r.stdout, r.result.StateLost)
	}
}

// TestBashSessionSurvivesPauseAndResume guarantees that the bash session
// is checkpointed and restored with its sandbox: after a pause, the next
// Exec finds its directory, variables and background job.
func TestBashSessionSurvivesPauseAndResume(t *testing.T) {
	d := startDaemon(t, daemonOpts{policy: copyPolicy(t, "pause.yaml")})
	id := d.create(t)
	r := session(t, d, id, "cd /tmp; export A=1; sleep 300 & echo $!", time.Minute)
	wantOK(t, r)
	job := r.stdout
	d.pause(t, id)
	r = session(t, d, id, "echo $A; pwd; echo $!; kill -0 $!", time.Minute)
	wantOK(t, r)
	if r.stdout != "1\n/tmp\n"+job || r.result.StateLost {
		t.Fatalf("after the resume: stdout %q (background job %q) state_lost %v", r.stdout, job, r.result.StateLost)
	}
}

// TestBashSessionOutputCapKeepsState guarantees that a session command cut
// at the template's output limit (the daemon cancels the agent's stream)
// ends OUTPUT_TRUNCATED and the session keeps its state.
func TestBashSessionOutputCapKeepsState(t *testing.T) {
	d := startDaemon(t, daemonOpts{policy: copyPolicy(t, "limits.yaml")})
	id := d.create(t)
	wantOK(t, session(t, d, id, "export A=1", time.Minute))
	r := session(t, d, id, "yes", time.Minute)
	if r.result.Status != sandboxv1.ExecStatus_EXEC_STATUS_OUTPUT_TRUNCATED {
		t.Fatalf("yes: %v", r.result)
	}
	r = session(t, d, id, "echo $A", time.Minute)
	wantOK(t, r)
	if r.stdout != "1\n" || r.result.StateLost {
		t.Fatalf("after the cut: stdout %q state_lost %v", r.stdout, r.result.StateLost)
	}
}

// BenchmarkSessionExecRoundTrip measures a trivial Exec (`true`) in a bash
// session against one in a fresh bash (LANGUAGE_BASH), client to client:
//
//	go test -run '^$' -bench SessionExecRoundTrip -benchtime 200x ./cmd/sandboxd/e2e/
func BenchmarkSessionExecRoundTrip(b *testing.B) {
	d := startDaemon(b, daemonOpts{})
	id := d.create(b)
	for _, lang := range []sandboxv1.Language{sandboxv1.Language_LANGUAGE_BASH_SESSION, sandboxv1.Language_LANGUAGE_BASH} {
		b.Run(lang.String(), func(b *testing.B) {
			var samples []time.Duration
			for b.Loop() {
				start := time.Now()
				r, err := d.tryRun(context.Background(), id, &sandboxv1.ExecRequest{Language: lang, Code: "true"})
				if err != nil || r.result.Status != sandboxv1.ExecStatus_EXEC_STATUS_OK {
					b.Fatalf("%v %v", err, r.result)
				}
				samples = append(samples, time.Since(start))
			}
			reportPercentiles(b, samples)
		})
	}
}
