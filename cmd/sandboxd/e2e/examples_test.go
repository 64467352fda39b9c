package e2e

import (
	"bytes"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// TestToolLoopExampleReplays guarantees that examples/toolloop, a tool loop
// replaying a recorded sequence of a model's tool calls (create a CSV, run
// pandas on it, plot, edit a script with str_replace and run it in the bash
// session, list the files, download the PNG), works against a real daemon,
// and that it leaves no sandbox behind.
func TestToolLoopExampleReplays(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	prog := filepath.Join(t.TempDir(), "toolloop")
	if err := goBuild(prog, "../../../examples/toolloop"); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cmd := exec.Command(prog, "--socket", d.socket, "--calls", "../../../examples/toolloop/calls.json", "--out", out)
	transcript, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("toolloop: %v\n%s", err, transcript)
	}
	for _, want := range []string{
		"File created successfully", // create sales.csv
		"north    255",              // pandas' group totals
		"[figure 1:",                // the plot came back as a figure
		"has been edited",           // str_replace
		"top regions: north, south", // the edited script, run in bash
		"/workspace/report.py",      // list_files
		"downloaded units.png",      // download_file
	} {
		if !strings.Contains(string(transcript), want) {
			t.Errorf("transcript lacks %q:\n%s", want, transcript)
		}
	}
	for _, name := range []string{"units.png", "figure-1.png"} {
		data, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := png.DecodeConfig(bytes.NewReader(data)); err != nil {
			t.Errorf("%s is not a PNG: %v", name, err)
		}
	}
	list, err := d.client.ListSandboxes(ctx(t), &sandboxv1.ListSandboxesRequest{LabelSelector: map[string]string{"app": "toolloop"}})
	if err != nil || len(list.GetSandboxes()) != 0 {
		t.Errorf("the example left sandboxes behind: %v %v", list, err)
	}
}
