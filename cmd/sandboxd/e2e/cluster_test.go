package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sandboxd/sandboxd/client"
	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
	"github.com/sandboxd/sandboxd/runtime/identifiers"
)

// clusterPolicy serves two tenants on a loopback TCP address (set per
// daemon with --listen-tcp) with a small warm pool.
func clusterPolicy(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cluster.yaml")
	if err := os.WriteFile(p, []byte(clusterPolicyText()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// clusterPolicyText is clusterPolicy's content.
func clusterPolicyText() string {
	return fmt.Sprintf(`host:
  max_sandboxes: 16
tenants:
  team-a:
    tokens: [%s]
  team-b:
    tokens: [%s]
templates:
  python: {}
pools:
  - template: python
    idle: 2
    max_total: 14
    max_booting: 2
`, tokenHash(tokenA), tokenHash(tokenB))
}

// node is one daemon of the test cluster, with its TCP address (also its
// --node-address) and its audit log.
type node struct {
	*daemon
	addr  string
	audit string
	opts  daemonOpts
}

func startNode(t testing.TB, policy string, dir string, i int) *node {
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	n := &node{addr: addr, audit: filepath.Join(dir, fmt.Sprintf("audit-%d.log", i))}
	n.opts = daemonOpts{policy: policy, stateDir: filepath.Join(dir, fmt.Sprintf("state-%d", i)),
		args: []string{"--listen-tcp", addr, "--node-address", addr, "--audit-log", n.audit}}
	n.daemon = startDaemon(t, n.opts)
	return n
}

// startNginx runs nginx with deploy/nginx/nginx.conf (on a free port) and
// the node allow-list nodes.sh writes, and returns its address.
func startNginx(t testing.TB, nodes []string) string {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		t.Fatalf("nginx is not installed (apt-get install nginx-light; .ci/run does): %v", err)
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755) // nginx's workers run as nobody and read nothing here, but need to traverse
	conf, err := os.ReadFile("../../../deploy/nginx/nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	if !strings.Contains(string(conf), "listen 8443 http2;") {
		t.Fatal("deploy/nginx/nginx.conf no longer has the line `listen 8443 http2;` this test replaces")
	}
	conf = []byte(strings.Replace(string(conf), "listen 8443 http2;", "listen "+addr+" http2;", 1))
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), conf, 0o644); err != nil {
		t.Fatal(err)
	}
	gen := exec.Command("../../../deploy/nginx/nodes.sh", nodes...)
	out, err := gen.Output()
	if err != nil {
		t.Fatalf("nodes.sh: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sandboxd-nodes.conf"), out, 0o644); err != nil {
		t.Fatal(err)
	}
	log := &lockedBuffer{}
	cmd := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", "stderr", "-g", "daemon off;")
	cmd.Stdout, cmd.Stderr = log, log
	// The workers inherit the output pipe; if one outlived the master,
	// Wait would wait for it.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM) // fast shutdown: the master stops its workers
		cmd.Wait()
		if t.Failed() {
			t.Logf("nginx log:\n%s", log.String())
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx not listening on %s:\n%s", addr, log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// auditedSandboxes returns how many lines of each sandbox an audit log has.
func auditedSandboxes(t *testing.T, path string) map[string]int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line struct {
			Sandbox string `json:"sandbox"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if line.Sandbox != "" {
			seen[line.Sandbox]++
		}
	}
	return seen
}

func newClusterClient(t *testing.T, cfg client.Config) *client.Client {
	t.Helper()
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestClusterOfThreeNodes runs three daemons on this host as the nodes of
// a cluster, reached through the Go client directly and through the nginx
// proxy of deploy/nginx, and checks what many nodes promise: creates
// spread, every call reaches the sandbox's owner, a dead node's sandboxes
// answer Unavailable (never another node's answer) and answer again once
// it restarts, the proxy refuses nodes outside its allow-list, metadata
// and body must agree, and a tenant's list across nodes is exactly its
// sandboxes.
func TestClusterOfThreeNodes(t *testing.T) {
	requireE2E(t)
	policy := clusterPolicy(t)
	dir, err := os.MkdirTemp("/tmp", "sbd-cluster-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var nodes []*node
	var addrs []string
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := range 3 {
		wg.Go(func() {
			n := startNode(t, policy, dir, i)
			mu.Lock()
			defer mu.Unlock()
			nodes = append(nodes, n)
		})
	}
	wg.Wait()
	if len(nodes) != 3 {
		t.FailNow()
	}
	slices.SortFunc(nodes, func(a, b *node) int { return strings.Compare(a.addr, b.addr) })
	byAddr := map[string]*node{}
	for _, n := range nodes {
		addrs = append(addrs, n.addr)
		byAddr[n.addr] = n
	}
	proxy := startNginx(t, addrs)
	paths := map[string]*client.Client{
		"direct": newClusterClient(t, client.Config{Addrs: addrs, Token: tokenA}),
		"proxy":  newClusterClient(t, client.Config{Addrs: addrs, Proxy: proxy, Token: tokenA}),
	}
	pathNames := []string{"direct", "proxy"}
	c := ctx(t)

	// 30 creates, half through each path, spread over the three nodes.
	perNode := map[string][]string{}
	for i := range 30 {
		path := pathNames[i%2]
		sb, err := paths[path].CreateSandbox(c, &sandboxv1.CreateSandboxRequest{Labels: map[string]string{"n": fmt.Sprint(i)}})
		if err != nil {
			t.Fatalf("create %d through %s: %v", i, path, err)
		}
		owner, ok := identifiers.NodeOf(sb.GetSandboxId())
		if !ok || owner != sb.GetNode() || byAddr[owner] == nil {
			t.Fatalf("sandbox %s: ID names node %q (%v), Sandbox.node %q", sb.GetSandboxId(), owner, ok, sb.GetNode())
		}
		perNode[owner] = append(perNode[owner], sb.GetSandboxId())
	}
	for _, a := range addrs {
		t.Logf("node %s: %d of 30 creates", a, len(perNode[a]))
		if len(perNode[a]) > 15 || len(perNode[a]) == 0 {
			t.Errorf("node %s got %d of 30 creates, want 1 to 15", a, len(perNode[a]))
		}
	}
	// Keep one sandbox per node; destroy the rest (through the proxy: a
	// per-sandbox call) to leave room.
	keep := map[string]string{}
	for _, a := range addrs {
		keep[a] = perNode[a][0]
		for _, id := range perNode[a][1:] {
			if _, err := paths["proxy"].DestroySandbox(c, &sandboxv1.DestroySandboxRequest{SandboxId: id}); err != nil {
				t.Fatalf("destroy %s through the proxy: %v", id, err)
			}
		}
	}
	var mine []string
	for _, a := range addrs {
		mine = append(mine, keep[a])
	}

	// Every kind of per-sandbox call, through both paths, reaches the owner.
	for _, a := range addrs {
		for _, path := range pathNames {
			exerciseSandbox(t, paths[path], keep[a], path)
		}
	}
	for _, a := range addrs {
		for _, n := range nodes {
			var got map[string]int
			for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				got = auditedSandboxes(t, n.audit)
				if n.addr != a || got[keep[a]] >= 2*callsPerExercise || time.Now().After(deadline) {
					break
				}
			}
			switch {
			case n.addr == a && got[keep[a]] < 2*callsPerExercise:
				t.Errorf("owner %s audited %d calls of its sandbox %s, want at least %d", n.addr, got[keep[a]], keep[a], 2*callsPerExercise)
			case n.addr != a && got[keep[a]] > 0:
				t.Errorf("node %s served %d calls of %s, which belongs to %s", n.addr, got[keep[a]], keep[a], a)
			}
		}
	}

	// sandboxctl takes the cluster as repeated --addr, directly or through
	// the proxy: a list across nodes with a NODE column, and an exec routed
	// by the ID.
	ctl := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(ctlBinary(t), args...)
		cmd.Env = append(os.Environ(), "SANDBOXD_TOKEN="+tokenA)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("sandboxctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	var addrFlags []string
	for _, a := range addrs {
		addrFlags = append(addrFlags, "--addr", a)
	}
	for _, via := range [][]string{nil, {"--proxy", proxy}} {
		out := ctl(append(append(slices.Clone(addrFlags), via...), "list")...)
		if !strings.Contains(out, "NODE") {
			t.Errorf("sandboxctl list on a cluster has no NODE column:\n%s", out)
		}
		for _, a := range addrs {
			if !strings.Contains(out, keep[a]) || !strings.Contains(out, a) {
				t.Errorf("sandboxctl list %v does not show %s on %s:\n%s", via, keep[a], a, out)
			}
		}
		if out := ctl(append(append(slices.Clone(addrFlags), via...), "exec", keep[addrs[2]], "print(6*7)")...); out != "42\n" {
			t.Errorf("sandboxctl exec %v = %q, want 42", via, out)
		}
	}

	// Metadata and body must agree.
	raw, err := grpc.NewClient("passthrough:///"+addrs[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	api := sandboxv1.NewSandboxServiceClient(raw)
	authed := metadata.AppendToOutgoingContext(c, "authorization", "Bearer "+tokenA)
	mismatch := metadata.AppendToOutgoingContext(authed, client.SandboxIDKey, keep[addrs[1]])
	if _, err := api.GetSandbox(mismatch, &sandboxv1.GetSandboxRequest{SandboxId: keep[addrs[0]]}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("x-sandbox-id naming another sandbox than the body: %v, want InvalidArgument", err)
	}
	// A node answers NotFound for another node's ID, Destroy included.
	if _, err := api.DestroySandbox(authed, &sandboxv1.DestroySandboxRequest{SandboxId: keep[addrs[1]]}); status.Code(err) != codes.NotFound {
		t.Errorf("destroy of another node's sandbox sent to %s: %v, want NotFound", addrs[0], err)
	}

	// The proxy refuses a node outside its allow-list, and a per-sandbox
	// call that names no node.
	viaProxy, err := grpc.NewClient("passthrough:///"+proxy, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer viaProxy.Close()
	papi := sandboxv1.NewSandboxServiceClient(viaProxy)
	outside := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	forged := identifiers.NewNodeID(outside)
	fctx := metadata.AppendToOutgoingContext(authed, client.NodeKey, outside, client.SandboxIDKey, forged)
	if _, err := papi.GetSandbox(fctx, &sandboxv1.GetSandboxRequest{SandboxId: forged}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("forged ID naming %s through the proxy: %v, want PermissionDenied from the allow-list", outside, err)
	}
	if _, err := papi.CreateSandbox(metadata.AppendToOutgoingContext(authed, client.NodeKey, outside), &sandboxv1.CreateSandboxRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("create naming %s through the proxy: %v, want PermissionDenied", outside, err)
	}
	if _, err := papi.GetSandbox(authed, &sandboxv1.GetSandboxRequest{SandboxId: keep[addrs[0]]}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("per-sandbox call without x-sandbox-node through the proxy: %v, want InvalidArgument", err)
	}
	if _, err := paths["proxy"].GetSandbox(c, &sandboxv1.GetSandboxRequest{SandboxId: forged}); status.Code(err) != codes.NotFound {
		t.Errorf("forged ID through the client: %v, want NotFound (the client never dials outside the cluster)", err)
	}

	// A tenant's list across nodes is exactly its sandboxes.
	bClient := newClusterClient(t, client.Config{Addrs: addrs, Token: tokenB})
	var theirs []string
	for range 2 {
		sb, err := bClient.CreateSandbox(c, &sandboxv1.CreateSandboxRequest{})
		if err != nil {
			t.Fatal(err)
		}
		theirs = append(theirs, sb.GetSandboxId())
	}
	for who, want := range map[*client.Client][]string{paths["direct"]: mine, paths["proxy"]: mine, bClient: theirs} {
		resp, err := who.ListSandboxes(c, &sandboxv1.ListSandboxesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, sb := range resp.GetSandboxes() {
			got = append(got, sb.GetSandboxId())
		}
		if !sameSet(got, want) {
			t.Errorf("list across nodes = %v, want exactly %v", got, want)
		}
	}
	for _, id := range theirs {
		bClient.DestroySandbox(c, &sandboxv1.DestroySandboxRequest{SandboxId: id})
	}

	// kill -9 of one node: its sandbox answers Unavailable within a second
	// through both paths, and no other node answers for it.
	dead := nodes[1]
	deadID := keep[dead.addr]
	before := map[string]int{}
	for _, n := range nodes {
		before[n.addr] = auditedSandboxes(t, n.audit)[deadID]
	}
	dead.kill()
	for _, path := range pathNames {
		for range 3 {
			start := time.Now()
			_, err := paths[path].GetSandbox(c, &sandboxv1.GetSandboxRequest{SandboxId: deadID})
			if took := time.Since(start); status.Code(err) != codes.Unavailable || took > time.Second {
				t.Errorf("%s: sandbox of the killed node: %v after %v, want Unavailable within 1s", path, err, took)
			}
			start = time.Now()
			err = execErr(c, paths[path], deadID)
			if took := time.Since(start); status.Code(err) != codes.Unavailable || took > time.Second {
				t.Errorf("%s: Exec on the killed node's sandbox: %v after %v, want Unavailable within 1s", path, err, took)
			}
		}
	}
	for _, n := range nodes {
		if n != dead && auditedSandboxes(t, n.audit)[deadID] != before[n.addr] {
			t.Errorf("node %s answered calls for %s, which belongs to the killed node", n.addr, deadID)
		}
	}
	// Creates keep succeeding on the others.
	for i := range 6 {
		path := pathNames[i%2]
		sb, err := paths[path].CreateSandbox(c, &sandboxv1.CreateSandboxRequest{})
		if err != nil {
			t.Fatalf("create %d through %s with a node down: %v", i, path, err)
		}
		if sb.GetNode() == dead.addr {
			t.Fatalf("created on the killed node %s", dead.addr)
		}
		paths[path].DestroySandbox(c, &sandboxv1.DestroySandboxRequest{SandboxId: sb.GetSandboxId()})
	}

	// The node restarts on its state directory and address: it adopts its
	// sandbox, which answers again through both paths, state intact.
	restarted := startDaemon(t, dead.opts)
	dead.daemon = restarted
	for _, path := range pathNames {
		deadline := time.Now().Add(10 * time.Second)
		for {
			out, err := execOut(c, paths[path], deadID, "print(marker)")
			if err == nil {
				if out != "direct\n" && out != "proxy\n" {
					t.Errorf("%s: the adopted sandbox prints %q, want the marker set before the kill", path, out)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the restarted node's sandbox still fails: %v", path, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for _, id := range mine {
		paths["direct"].DestroySandbox(c, &sandboxv1.DestroySandboxRequest{SandboxId: id})
	}
}

// callsPerExercise is how many audited calls exerciseSandbox makes.
const callsPerExercise = 7 // Get, Exec, Upload, Download, EditFile, ListFiles, Exec

// exerciseSandbox makes every kind of per-sandbox call on id through cl:
// Get, Exec, Upload, Download, EditFile, ListFiles and Exec again.
func exerciseSandbox(t *testing.T, cl *client.Client, id, path string) {
	t.Helper()
	c := ctx(t)
	if _, err := cl.GetSandbox(c, &sandboxv1.GetSandboxRequest{SandboxId: id}); err != nil {
		t.Fatalf("%s: get %s: %v", path, id, err)
	}
	if out, err := execOut(c, cl, id, fmt.Sprintf("marker = %q; print(marker)", path)); err != nil || out != path+"\n" {
		t.Fatalf("%s: exec on %s: %q, %v", path, id, out, err)
	}
	up, err := cl.Upload(c)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("routed through " + path + "\n")
	if err := up.Send(&sandboxv1.UploadRequest{Msg: &sandboxv1.UploadRequest_Header{Header: &sandboxv1.FileHeader{SandboxId: id, Path: "routed.txt"}}}); err != nil {
		t.Fatalf("%s: upload header: %v", path, err)
	}
	if err := up.Send(&sandboxv1.UploadRequest{Msg: &sandboxv1.UploadRequest_Chunk{Chunk: data}}); err != nil {
		t.Fatalf("%s: upload chunk: %v", path, err)
	}
	if _, err := up.CloseAndRecv(); err != nil {
		t.Fatalf("%s: upload to %s: %v", path, id, err)
	}
	dl, err := cl.Download(c, &sandboxv1.DownloadRequest{SandboxId: id, Path: "routed.txt"})
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for {
		m, err := dl.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: download from %s: %v", path, id, err)
		}
		got = append(got, m.GetChunk()...)
	}
	if string(got) != string(data) {
		t.Fatalf("%s: downloaded %q, want %q", path, got, data)
	}
	if _, err := cl.EditFile(c, &sandboxv1.EditFileRequest{SandboxId: id, Command: sandboxv1.EditCommand_EDIT_COMMAND_VIEW, Path: "routed.txt"}); err != nil {
		t.Fatalf("%s: edit view on %s: %v", path, id, err)
	}
	if _, err := cl.ListFiles(c, &sandboxv1.ListFilesRequest{SandboxId: id, Path: ".", Depth: 1}); err != nil {
		t.Fatalf("%s: list files on %s: %v", path, id, err)
	}
	if out, err := execOut(c, cl, id, "print(open('routed.txt').read(), end='')"); err != nil || out != string(data) {
		t.Fatalf("%s: exec on %s: %q, %v", path, id, out, err)
	}
}

// execOut runs Python code on id and returns its stdout, or the error of
// the call or of the code.
func execOut(c context.Context, cl *client.Client, id, code string) (string, error) {
	stream, err := cl.Exec(c, &sandboxv1.ExecRequest{SandboxId: id, Language: sandboxv1.Language_LANGUAGE_PYTHON, Code: code})
	if err != nil {
		return "", err
	}
	var out strings.Builder
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			return out.String(), nil
		}
		if err != nil {
			return out.String(), err
		}
		out.Write(ev.GetStdout())
		if r := ev.GetResult(); r != nil && r.GetExitCode() != 0 {
			return out.String(), fmt.Errorf("exit %d: %s %s", r.GetExitCode(), r.GetErrorName(), r.GetMessage())
		}
	}
}

func execErr(c context.Context, cl *client.Client, id string) error {
	_, err := execOut(c, cl, id, "1")
	return err
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
