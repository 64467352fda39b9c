package e2e

import (
	"bytes"
	"image/png"
	"testing"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// TestFiguresComeBackAsPNG guarantees the notebook-like figure contract: a
// cell that leaves a matplotlib figure open, or shows one, returns it as a
// decodable PNG of the figure's size, and the figures are closed afterwards,
// so the next cell returns none.
func TestFiguresComeBackAsPNG(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	id := d.create(t)

	r := py(t, d, id, "import matplotlib.pyplot as plt\nfig = plt.figure(figsize=(4, 3), dpi=50)\nplt.plot([1, 3, 2])\nplt.title('left open')")
	wantOK(t, r)
	checkPNGs(t, r.result, 1, 200, 150)

	r = py(t, d, id, "plt.figure(figsize=(2, 2), dpi=50)\nplt.plot([1])\nplt.show()\nlen(plt.get_fignums())")
	wantOK(t, r)
	if r.result.Value != "1" {
		t.Errorf("the figure should still be open while the cell runs: value %q", r.result.Value)
	}
	checkPNGs(t, r.result, 1, 100, 100)

	r = py(t, d, id, "len(plt.get_fignums())")
	wantOK(t, r)
	if r.result.Value != "0" || len(r.result.Images) != 0 {
		t.Errorf("after a cell its figures must be closed: value %q, %d images", r.result.Value, len(r.result.Images))
	}

	r = py(t, d, id, "x = 1")
	if len(r.result.Images) != 0 || r.result.ImagesTruncated {
		t.Errorf("a cell that draws nothing returned %d images (truncated %v)", len(r.result.Images), r.result.ImagesTruncated)
	}
}

// TestFiguresOverTheLimitAreCut guarantees limits.images: over the count,
// the first figures come back and the result says some were left out; all
// are closed.
func TestFiguresOverTheLimitAreCut(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	sb, err := d.client.CreateSandbox(ctx(t), &sandboxv1.CreateSandboxRequest{Limits: &sandboxv1.Limits{Images: 2}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.client.DestroySandbox(ctx(t), &sandboxv1.DestroySandboxRequest{SandboxId: sb.SandboxId}) })
	if got := sb.GetLimits().GetImages(); got != 2 {
		t.Fatalf("limits.images = %d, want the override 2", got)
	}
	r := py(t, d, sb.SandboxId, "import matplotlib.pyplot as plt\nfor i in range(3):\n    plt.figure(figsize=(1, 1), dpi=40)\n    plt.plot([i])")
	wantOK(t, r)
	checkPNGs(t, r.result, 2, 40, 40)
	if !r.result.ImagesTruncated {
		t.Error("3 figures over a limit of 2: images_truncated should be set")
	}
	if r := py(t, d, sb.SandboxId, "len(plt.get_fignums())"); r.result.Value != "0" {
		t.Errorf("figures over the limit must be closed too: %q open", r.result.Value)
	}
}

// checkPNGs fails unless res holds n PNG images of w x h pixels each.
func checkPNGs(t *testing.T, res *sandboxv1.ExecResult, n, w, h int) {
	t.Helper()
	if len(res.Images) != n {
		t.Fatalf("%d images, want %d", len(res.Images), n)
	}
	for i, img := range res.Images {
		if img.MimeType != "image/png" {
			t.Errorf("image %d: mime type %q", i, img.MimeType)
		}
		cfg, err := png.DecodeConfig(bytes.NewReader(img.Data))
		if err != nil {
			t.Fatalf("image %d is not a PNG: %v", i, err)
		}
		if cfg.Width != w || cfg.Height != h {
			t.Errorf("image %d is %dx%d, want %dx%d", i, cfg.Width, cfg.Height, w, h)
		}
	}
}
