package e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// ctl runs sandboxctl against the daemon and returns stdout, stderr and the
// exit status.
func (d *daemon) ctl(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	bins.ctlOnce.Do(func() {
		bins.ctl = filepath.Join(bins.dir, "sandboxctl")
		bins.ctlErr = goBuild(bins.ctl, "../../sandboxctl")
	})
	if bins.ctlErr != nil {
		t.Fatal(bins.ctlErr)
	}
	cmd := exec.Command(bins.ctl, append([]string{"--socket", d.socket}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("sandboxctl %v: %v", args, err)
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// TestReadmeExampleWithSandboxctl guarantees that the README's sandboxctl
// walk-through works as written: create, a pandas cell, kept state, bash,
// upload, a script from a file, a plot, download, a figure saved by exec
// --images, the bash session's kept state, ls, exit statuses, pause and a
// resuming exec, list, destroy.
func TestReadmeExampleWithSandboxctl(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	dir := t.TempDir()
	out, errOut, code := d.ctl(t, "", "create", "--label", "owner=me")
	id := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(id, "sb-") {
		t.Fatalf("create: %q %q %d", out, errOut, code)
	}
	steps := []struct {
		args   []string
		stdin  string
		want   string
		status int
	}{
		{[]string{"exec", id, `import pandas as pd; df = pd.DataFrame({"x": range(5)}); df.x.sum()`}, "", "10\n", 0},
		{[]string{"exec", id, `df.describe().to_csv("stats.csv")`}, "", "", 0},
		{[]string{"exec", "--lang", "bash", id, "head -1 stats.csv"}, "", ",x\n", 0},
		{[]string{"upload", id, filepath.Join(dir, "in.txt")}, "", "/workspace/in.txt", 0},
		{[]string{"exec", "--file", filepath.Join(dir, "job.py"), id}, "", "HELLO\n", 0},
		{[]string{"exec", id}, "print('from stdin')", "from stdin\n", 0},
		{[]string{"exec", id, `import matplotlib.pyplot as plt; plt.plot([1,3,2]); plt.savefig("plot.png")`}, "", "", 0},
		{[]string{"download", id, "plot.png", filepath.Join(dir, "plot.png")}, "", "", 0},
		{[]string{"exec", "--images", filepath.Join(dir, "figs"), id, "_ = plt.plot([3, 1, 2])"}, "", "", 0},
		{[]string{"exec", "--lang", "bash-session", id, "cd /tmp; export A=1"}, "", "", 0},
		{[]string{"exec", "--lang", "bash-session", id, "pwd; echo $A"}, "", "/tmp\n1\n", 0},
		{[]string{"ls", id}, "", "/workspace/stats.csv", 0},
		{[]string{"exec", "--lang", "bash", id, "exit 3"}, "", "", 3},
		{[]string{"exec", id, "1/0"}, "", "", 1},
		{[]string{"exec", "--timeout", "1s", "--lang", "bash", id, "sleep 100"}, "", "", 124},
		{[]string{"pause", id}, "", id + " PAUSED\n", 0},
		{[]string{"exec", id, "df.x.sum()"}, "", "10\n", 0},
		{[]string{"resume", id}, "", id + " RUNNING\n", 0},
		{[]string{"list"}, "", id, 0},
		{[]string{"destroy", id}, "", "", 0},
		{[]string{"exec", id, "1"}, "", "", 1},
	}
	os.WriteFile(filepath.Join(dir, "in.txt"), []byte("hello\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "job.py"), []byte(`print(open("/workspace/in.txt").read().upper(), end="")`), 0o644)
	for _, s := range steps {
		out, errOut, code := d.ctl(t, s.stdin, s.args...)
		if code != s.status || !strings.Contains(out, s.want) || (s.want == "" && s.status == 0 && out != "" && s.args[0] == "exec") {
			t.Fatalf("sandboxctl %q: stdout %q stderr %q exit %d; want %q exit %d", s.args, out, errOut, code, s.want, s.status)
		}
	}
	for _, name := range []string{"plot.png", "figs/figure-1.png"} {
		png, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
			t.Fatalf("%s is not a PNG (%d bytes, %v)", name, len(png), err)
		}
	}
	_, errOut, _ = d.ctl(t, "", "exec", id, "1")
	if !strings.Contains(errOut, "not found") || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("error after destroy is not one clear line: %q", errOut)
	}
}
