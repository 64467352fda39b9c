package sandbox

import (
	"os/exec"
	"strings"
	"testing"
)

// TestRestoreProbeRunsAndLeavesNoNames guarantees that the first cell of a
// restored clone is valid Python that reseeds, checks the warm imports,
// prints its readiness line and leaves nothing in the cells' namespace,
// with and without prefault; and that a missing warm import fails it.
func TestRestoreProbeRunsAndLeavesNoNames(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3 on this host")
	}
	for _, prefault := range []bool{false, true} {
		code := restoreProbe([]string{"json", "os.path"}, prefault) + "\nimport json, os.path\nprint(sorted(n for n in globals() if not n.startswith('__') or n.startswith('__sandboxd')))\n"
		// The probe runs after the warm imports, like in a restored clone.
		out, err := exec.Command(python, "-c", "import json, os.path\n"+code).CombinedOutput()
		if err != nil {
			t.Fatalf("prefault %v: %v\n%s", prefault, err, out)
		}
		if got := string(out); got != "ready\n['json', 'os']\n" {
			t.Errorf("prefault %v: output %q, want the readiness line and only the warm imports' names", prefault, got)
		}
		if strings.Contains(code, "gc") != prefault {
			t.Errorf("prefault %v: gc.collect present = %v", prefault, !prefault)
		}
	}
	out, err := exec.Command(python, "-c", restoreProbe([]string{"no_such_module_xyz"}, false)).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "warm imports not loaded after restore: no_such_module_xyz") {
		t.Errorf("a missing warm import: %v %s", err, out)
	}
}
