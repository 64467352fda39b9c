package manager

import (
	"testing"

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
