package kubernetes_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/sandboxd/sandboxd/policy"
	"github.com/sandboxd/sandboxd/runtime/identifiers"
)

// The files of this directory the test treats specially.
const (
	// kustomizationFile lists what `kubectl apply -k` applies.
	kustomizationFile = "kustomization.yaml"
	// optionalFile holds the ServiceMonitor, which needs the Prometheus
	// Operator's CRDs and so is left out of the kustomization.
	optionalFile = "servicemonitor.yaml"
	// dockerfile builds the image the DaemonSet runs.
	dockerfile = "Dockerfile"
)

const (
	// namespace is where every namespaced object must live: the Service's
	// DNS name (sandboxd.sandboxd.svc) and the Namespace's privileged Pod
	// Security label depend on it.
	namespace = "sandboxd"
	// nodeIPVar is the environment variable the DaemonSet fills from the
	// Downward API (status.hostIP) and expands in its args.
	nodeIPVar = "NODE_IP"
	// sampleNodeIP stands for a node's status.hostIP where the test
	// expands $(NODE_IP): any IPv4 address off loopback.
	sampleNodeIP = "10.1.2.3"
	// rpcGrace is cmd/sandboxd's gracePeriod: on SIGTERM running calls
	// get this long before the pauses (host.shutdown_timeout) start, so the
	// pod's termination grace period must cover both.
	rpcGrace = 5 * time.Second
	// drainLabel is the node label that takes a node's daemon away.
	drainLabel = "sandboxd.io/drain"
	// cgroupMount is where the container sees its cgroups.
	cgroupMount = "/sys/fs/cgroup"
)

// object is one decoded manifest document.
type object struct {
	file string
	obj  any
}

// apiObject returns an empty object of the Go type for apiVersion and kind,
// or nil for a kind these manifests must not hold.
func apiObject(apiVersion, kind string) any {
	switch apiVersion + " " + kind {
	case "v1 Namespace":
		return &corev1.Namespace{}
	case "v1 Service":
		return &corev1.Service{}
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}
	case "v1 Secret":
		return &corev1.Secret{}
	case "apps/v1 DaemonSet":
		return &appsv1.DaemonSet{}
	case "monitoring.coreos.com/v1 ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}
	}
	return nil
}

// decodeStrict decodes one YAML document into out: a field the type does
// not have, or a field written twice, is an error.
func decodeStrict(doc []byte, out any) error {
	if err := yaml.UnmarshalStrict(doc, out); err != nil {
		return fmt.Errorf("decoding strictly: %w", err)
	}
	return nil
}

// splitDocuments returns the YAML documents of data, without those that
// hold nothing but comments.
func splitDocuments(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("splitting YAML documents: %w", err)
		}
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("reading a YAML document: %w", err)
		}
		if string(bytes.TrimSpace(j)) != "null" {
			docs = append(docs, doc)
		}
	}
}

// decodeManifest decodes one document into the API type its apiVersion
// and kind name.
func decodeManifest(doc []byte) (any, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, fmt.Errorf("reading apiVersion and kind: %w", err)
	}
	obj := apiObject(tm.APIVersion, tm.Kind)
	if obj == nil {
		return nil, fmt.Errorf("unexpected apiVersion %q kind %q", tm.APIVersion, tm.Kind)
	}
	if err := decodeStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s %s: %w", tm.APIVersion, tm.Kind, err)
	}
	return obj, nil
}

// yamlFiles returns the names of the directory's *.yaml files.
func yamlFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no *.yaml files in the directory")
	}
	return files
}

// manifests are the decoded objects of the directory.
type manifests struct {
	all             []object
	namespace       *corev1.Namespace
	daemonSet       *appsv1.DaemonSet
	services        map[string]*corev1.Service
	configMaps      map[string]*corev1.ConfigMap
	secrets         map[string]*corev1.Secret
	serviceMonitors []*monitoringv1.ServiceMonitor
}

// load decodes every document of every *.yaml file but the kustomization,
// strictly, failing the test on any error.
func load(t *testing.T) *manifests {
	t.Helper()
	m := &manifests{services: map[string]*corev1.Service{}, configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
	for _, file := range yamlFiles(t) {
		if file == kustomizationFile {
			continue
		}
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		docs, err := splitDocuments(data)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if len(docs) == 0 {
			t.Errorf("%s holds no manifest", file)
		}
		for i, doc := range docs {
			obj, err := decodeManifest(doc)
			if err != nil {
				t.Fatalf("%s, document %d: %v", file, i+1, err)
			}
			m.all = append(m.all, object{file, obj})
			switch o := obj.(type) {
			case *corev1.Namespace:
				if m.namespace != nil {
					t.Fatalf("%s: a second Namespace", file)
				}
				m.namespace = o
			case *appsv1.DaemonSet:
				if m.daemonSet != nil {
					t.Fatalf("%s: a second DaemonSet", file)
				}
				m.daemonSet = o
			case *corev1.Service:
				m.services[o.Name] = o
			case *corev1.ConfigMap:
				m.configMaps[o.Name] = o
			case *corev1.Secret:
				m.secrets[o.Name] = o
			case *monitoringv1.ServiceMonitor:
				m.serviceMonitors = append(m.serviceMonitors, o)
			}
		}
	}
	if m.namespace == nil || m.daemonSet == nil {
		t.Fatal("the manifests need a Namespace and a DaemonSet")
	}
	return m
}

// container returns the DaemonSet's sandboxd container.
func (m *manifests) container(t *testing.T) *corev1.Container {
	t.Helper()
	cs := m.daemonSet.Spec.Template.Spec.Containers
	if len(cs) != 1 || cs[0].Name != "sandboxd" {
		t.Fatalf("the DaemonSet must run one container, sandboxd; it has %d", len(cs))
	}
	return &cs[0]
}

// flagValue returns the value of --name=VALUE in args, which must be
// given exactly once.
func flagValue(t *testing.T, args []string, name string) string {
	t.Helper()
	var values []string
	for _, a := range args {
		if a == "--"+name || a == "-"+name {
			t.Fatalf("write --%s=VALUE as one argument", name)
		}
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			values = append(values, v)
		}
	}
	if len(values) != 1 {
		t.Fatalf("--%s is given %d times in the DaemonSet's args, want once", name, len(values))
	}
	return values[0]
}

// expandNodeIP expands $(NODE_IP) as the kubelet would on a node with
// sampleNodeIP.
func expandNodeIP(s string) string {
	return strings.ReplaceAll(s, "$("+nodeIPVar+")", sampleNodeIP)
}

// volumeOf returns the volume mounted where p lies in the container and
// p's path inside it ("" if p is the mount point).
func (m *manifests) volumeOf(t *testing.T, p string) (*corev1.Volume, string) {
	t.Helper()
	c := m.container(t)
	var mount *corev1.VolumeMount
	for i, vm := range c.VolumeMounts {
		mp := strings.TrimSuffix(vm.MountPath, "/")
		if (p == mp || strings.HasPrefix(p, mp+"/")) && (mount == nil || len(mp) > len(mount.MountPath)) {
			mount = &c.VolumeMounts[i]
		}
	}
	if mount == nil {
		t.Fatalf("%s is on no volume the container mounts", p)
	}
	for i, v := range m.daemonSet.Spec.Template.Spec.Volumes {
		if v.Name == mount.Name {
			return &m.daemonSet.Spec.Template.Spec.Volumes[i], strings.TrimPrefix(strings.TrimPrefix(p, mount.MountPath), "/")
		}
	}
	t.Fatalf("volume %q, mounted at %s, is not among the pod's volumes", mount.Name, mount.MountPath)
	return nil, ""
}

// policy parses and validates the policy the DaemonSet's --policy names,
// from the ConfigMap mounted there.
func (m *manifests) policy(t *testing.T) *policy.Policy {
	t.Helper()
	file := flagValue(t, m.container(t).Args, "policy")
	vol, key := m.volumeOf(t, file)
	if vol.ConfigMap == nil {
		t.Fatalf("--policy %s is not on a ConfigMap volume", file)
	}
	cm := m.configMaps[vol.ConfigMap.Name]
	if cm == nil {
		t.Fatalf("ConfigMap %q, mounted for --policy, is not in the manifests", vol.ConfigMap.Name)
	}
	data, ok := cm.Data[key]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %q, which --policy %s names", cm.Name, key, file)
	}
	// Lay the mounted files out as the pod sees them, under a temporary
	// root, and load the policy from there: its tenants_file is read from
	// the volume mounted where it points.
	root := t.TempDir()
	m.writeMounted(t, root, file, data)
	if tf := tenantsFileOf(data); tf != "" {
		tenants := tf
		if !filepath.IsAbs(tenants) {
			tenants = filepath.Join(filepath.Dir(file), tf)
		}
		m.writeMounted(t, root, tenants, m.secretFile(t, tenants, "tenants_file"))
	}
	pol, err := policy.Load(filepath.Join(root, file))
	if err != nil {
		t.Fatalf("the policy does not validate:\n%v", err)
	}
	return pol
}

// tenantsFileOf returns the top-level tenants_file of a policy, if any.
func tenantsFileOf(policyYAML string) string {
	var top struct {
		TenantsFile string `json:"tenants_file"`
	}
	if err := yaml.Unmarshal([]byte(policyYAML), &top); err != nil {
		return ""
	}
	return top.TenantsFile
}

// writeMounted writes data at the pod's path file under root.
func (m *manifests) writeMounted(t *testing.T, root, file, data string) {
	t.Helper()
	path := filepath.Join(root, file)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// secretFile returns the content of the pod's path file, which must be a
// key of a Secret in the manifests mounted there; what names the file.
func (m *manifests) secretFile(t *testing.T, file, what string) string {
	t.Helper()
	vol, key := m.volumeOf(t, file)
	if vol.Secret == nil {
		t.Fatalf("%s %s is not on a Secret volume", what, file)
	}
	s := m.secrets[vol.Secret.SecretName]
	if s == nil {
		t.Fatalf("Secret %q, mounted for %s, is not in the manifests", vol.Secret.SecretName, what)
	}
	if v, ok := s.StringData[key]; ok {
		return v
	}
	if v, ok := s.Data[key]; ok {
		return string(v)
	}
	t.Fatalf("Secret %s has no key %q, which %s %s names", s.Name, key, what, file)
	return ""
}

// TestManifestsDecodeStrictly guarantees that every document of every
// manifest decodes into its Kubernetes API type with no unknown or
// repeated field (a typo such as hostNetwrk fails here, not silently in
// the cluster), and that every namespaced object is in the namespace
// sandboxd.
func TestManifestsDecodeStrictly(t *testing.T) {
	m := load(t)
	if m.namespace.Name != namespace {
		t.Errorf("Namespace is %q, want %q", m.namespace.Name, namespace)
	}
	if got := m.namespace.Labels["pod-security.kubernetes.io/enforce"]; got != "privileged" {
		t.Errorf("Namespace label pod-security.kubernetes.io/enforce = %q, want privileged: the DaemonSet's pods are privileged", got)
	}
	for _, o := range m.all {
		meta, ok := o.obj.(metav1.Object)
		if !ok {
			t.Fatalf("%s: %T has no metadata", o.file, o.obj)
		}
		if _, isNS := o.obj.(*corev1.Namespace); !isNS && meta.GetNamespace() != namespace {
			t.Errorf("%s: %T %s is in namespace %q, want %q", o.file, o.obj, meta.GetName(), meta.GetNamespace(), namespace)
		}
	}
}

// TestStrictDecodingCatchesTypos guarantees that the decoding the other
// tests rely on has teeth: a misspelt field and a field written twice
// are errors, and the same document without them is not.
func TestStrictDecodingCatchesTypos(t *testing.T) {
	const good = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      hostNetwork: true\n"
	if _, err := decodeManifest([]byte(good)); err != nil {
		t.Fatalf("a valid DaemonSet: %v", err)
	}
	for name, doc := range map[string]string{
		"unknown field":   strings.Replace(good, "hostNetwork", "hostNetwrk", 1),
		"duplicate field": good + "      hostNetwork: false\n",
		"unknown kind":    strings.Replace(good, "DaemonSet", "DaemonSett", 1),
	} {
		if _, err := decodeManifest([]byte(doc)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

// TestDaemonSetRunsSandboxd guarantees what the daemon needs from its pod:
// privileged (runsc makes namespaces, mounts and cgroups) and unconfined
// by seccomp, on the host's network with cluster DNS, the state directory
// the --state-dir flag names on the node's disk at the same path, the
// container's own cgroup mount (a host /sys/fs/cgroup mounted over it
// breaks cgroup v2 nodes: see daemonset.yaml), the audit log on the
// node's disk, a readiness probe that runs `sandboxd health` on the
// daemon's socket, and the image's entrypoint (the daemon) with flags.
func TestDaemonSetRunsSandboxd(t *testing.T) {
	m := load(t)
	pod := &m.daemonSet.Spec.Template.Spec
	c := m.container(t)
	sc := c.SecurityContext
	if sc == nil || sc.Privileged == nil || !*sc.Privileged {
		t.Error("the container is not privileged")
	}
	if sc != nil && sc.RunAsUser != nil && *sc.RunAsUser != 0 {
		t.Errorf("the container runs as uid %d, want root", *sc.RunAsUser)
	}
	if sc == nil || sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeUnconfined {
		t.Error("the container's seccomp profile is not Unconfined: runsc fails under the default profile")
	}
	if !pod.HostNetwork {
		t.Error("hostNetwork is false: the node's address in sandbox IDs would change with every pod")
	}
	if pod.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("dnsPolicy is %q, want ClusterFirstWithHostNet (cluster DNS on hostNetwork)", pod.DNSPolicy)
	}
	if len(c.Command) != 0 {
		t.Errorf("command %q replaces the image's entrypoint, the daemon; pass flags as args", c.Command)
	}

	stateDir := flagValue(t, c.Args, "state-dir")
	vol, rest := m.volumeOf(t, stateDir)
	if rest != "" || vol.HostPath == nil || vol.HostPath.Path != stateDir {
		t.Errorf("--state-dir %s is not a hostPath volume of the same path mounted there (volume %q, %q below it): paused sandboxes would not survive the pod", stateDir, vol.Name, rest)
	} else if vol.HostPath.Type == nil || *vol.HostPath.Type != corev1.HostPathDirectoryOrCreate {
		t.Errorf("hostPath %s has type %v, want DirectoryOrCreate", stateDir, vol.HostPath.Type)
	}

	for _, vm := range c.VolumeMounts {
		if mp := path.Clean(vm.MountPath); mp == cgroupMount || strings.HasPrefix(mp, cgroupMount+"/") || strings.HasPrefix(cgroupMount, mp+"/") {
			t.Errorf("volume %q is mounted at %s, over the container's own cgroup mount", vm.Name, vm.MountPath)
		}
	}

	if audit := m.policy(t).Host.AuditLog; audit != "" {
		if vol, _ := m.volumeOf(t, filepath.Dir(audit)); vol.HostPath == nil {
			t.Errorf("the audit log %s is on volume %q, not on the node's disk (hostPath)", audit, vol.Name)
		}
	}

	socket := flagValue(t, c.Args, "socket")
	if vol, _ := m.volumeOf(t, filepath.Dir(socket)); vol.EmptyDir == nil && vol.HostPath == nil {
		t.Errorf("--socket %s is on volume %q, neither an emptyDir nor a hostPath", socket, vol.Name)
	}
	p := c.ReadinessProbe
	if p == nil || p.Exec == nil {
		t.Fatal("no exec readiness probe: the kubelet's grpc probe cannot speak TLS, which the TCP port serves")
	}
	cmd := p.Exec.Command
	i := slices.Index(cmd, "--socket")
	if len(cmd) < 2 || filepath.Base(cmd[0]) != "sandboxd" || cmd[1] != "health" || i < 0 || i+1 >= len(cmd) || cmd[i+1] != socket {
		t.Errorf("readiness probe runs %q, want `sandboxd health --socket %s`", cmd, socket)
	}
	if p.TimeoutSeconds < 3 {
		t.Errorf("readiness probe timeoutSeconds %d is below `sandboxd health`'s own 2s timeout plus start-up", p.TimeoutSeconds)
	}

	for _, name := range []string{"runsc", "rootfs"} {
		if v := flagValue(t, c.Args, name); !filepath.IsAbs(v) {
			t.Errorf("--%s %q is not an absolute path in the image", name, v)
		}
	}
	if c.Image == "" || c.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("image %q with pull policy %q, want an image and IfNotPresent", c.Image, c.ImagePullPolicy)
	}
}

// TestDaemonSetAddresses guarantees that the address put in sandbox IDs
// is one clients can dial and the daemon serves: --node-address and
// --listen-tcp are both the node's IP (status.hostIP through NODE_IP) with
// the port of the container's grpc port and of the Service's grpc port;
// the node address is one identifiers.ValidateNodeAddress accepts; the
// policy allows the API on that non-loopback address (TLS and tenants);
// and the headless Service selects the DaemonSet's pods.
func TestDaemonSetAddresses(t *testing.T) {
	m := load(t)
	c := m.container(t)
	var nodeIP *corev1.EnvVar
	for i, e := range c.Env {
		if e.Name == nodeIPVar {
			nodeIP = &c.Env[i]
		}
	}
	if nodeIP == nil || nodeIP.ValueFrom == nil || nodeIP.ValueFrom.FieldRef == nil || nodeIP.ValueFrom.FieldRef.FieldPath != "status.hostIP" {
		t.Fatalf("env %s does not come from the Downward API's status.hostIP", nodeIPVar)
	}

	var grpcPort *corev1.ContainerPort
	for i, p := range c.Ports {
		if p.Name == "grpc" {
			grpcPort = &c.Ports[i]
		}
	}
	if grpcPort == nil {
		t.Fatal("the container has no port named grpc")
	}
	want := fmt.Sprint(grpcPort.ContainerPort)

	node := flagValue(t, c.Args, "node-address")
	listen := flagValue(t, c.Args, "listen-tcp")
	for flag, v := range map[string]string{"node-address": node, "listen-tcp": listen} {
		host, port, err := net.SplitHostPort(v)
		if err != nil {
			t.Fatalf("--%s=%s: %v", flag, v, err)
		}
		if host != "$("+nodeIPVar+")" {
			t.Errorf("--%s host is %q, want $(%s)", flag, host, nodeIPVar)
		}
		if port != want {
			t.Errorf("--%s port is %s, want the container's grpc port %s", flag, port, want)
		}
	}
	if err := identifiers.ValidateNodeAddress(expandNodeIP(node)); err != nil {
		t.Errorf("--node-address on a node: %v", err)
	}
	if msg := m.policy(t).APIListenerProblem(expandNodeIP(listen)); msg != "" {
		t.Errorf("the daemon would refuse --listen-tcp=%s: %s", expandNodeIP(listen), msg)
	}

	svc := m.services["sandboxd"]
	if svc == nil {
		t.Fatal("no Service sandboxd")
	}
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("Service sandboxd has clusterIP %q, want None (headless: clients must see every node)", svc.Spec.ClusterIP)
	}
	var sp *corev1.ServicePort
	for i, p := range svc.Spec.Ports {
		if p.Name == "grpc" {
			sp = &svc.Spec.Ports[i]
		}
	}
	if sp == nil {
		t.Fatal("Service sandboxd has no port named grpc")
	}
	if fmt.Sprint(sp.Port) != want {
		t.Errorf("Service grpc port %d, want %s (clients dial the address in IDs and the Service's port alike)", sp.Port, want)
	}
	if tp := sp.TargetPort; !(tp.Type == intstr.String && tp.StrVal == grpcPort.Name) && !(tp.Type == intstr.Int && tp.IntVal == grpcPort.ContainerPort) {
		t.Errorf("Service grpc targetPort %s is not the container's grpc port", tp.String())
	}

	podLabels := labels.Set(m.daemonSet.Spec.Template.Labels)
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) || len(svc.Spec.Selector) == 0 {
		t.Errorf("Service selector %v does not select the DaemonSet's pods %v", svc.Spec.Selector, podLabels)
	}
	sel, err := metav1.LabelSelectorAsSelector(m.daemonSet.Spec.Selector)
	if err != nil || !sel.Matches(podLabels) {
		t.Errorf("the DaemonSet's selector does not match its pod template (%v)", err)
	}
}

// TestDaemonSetShutdown guarantees the pause-on-shutdown path: the grace
// period covers the running calls' grace plus the policy's
// host.shutdown_timeout, a preStop hook signals the daemon (PID 1) and
// waits for it to exit, and a rolling update never runs two daemons on
// one node (they would share the state directory and the port).
func TestDaemonSetShutdown(t *testing.T) {
	m := load(t)
	pod := &m.daemonSet.Spec.Template.Spec
	shutdown := m.policy(t).Host.ShutdownTimeout
	if g := pod.TerminationGracePeriodSeconds; g == nil {
		t.Error("no terminationGracePeriodSeconds: the default 30s is shorter than host.shutdown_timeout's default")
	} else if grace := time.Duration(*g) * time.Second; grace <= shutdown+rpcGrace {
		t.Errorf("terminationGracePeriodSeconds %v does not exceed host.shutdown_timeout %v + %v for running calls", grace, shutdown, rpcGrace)
	}
	c := m.container(t)
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Exec == nil {
		t.Fatal("no exec preStop hook")
	}
	hook := strings.Join(c.Lifecycle.PreStop.Exec.Command, " ")
	if !strings.Contains(hook, "kill -TERM 1") || !strings.Contains(hook, "kill -0 1") {
		t.Errorf("preStop %q must send SIGTERM to PID 1 (kill -TERM 1) and wait until it exits (kill -0 1)", hook)
	}
	if c.LivenessProbe != nil {
		t.Error("a liveness probe restarts the daemon, pausing and resuming every sandbox")
	}
	u := m.daemonSet.Spec.UpdateStrategy
	if u.RollingUpdate != nil && u.RollingUpdate.MaxSurge != nil && u.RollingUpdate.MaxSurge.String() != "0" {
		t.Errorf("maxSurge %s: two daemons would share a node", u.RollingUpdate.MaxSurge.String())
	}
}

// requirement converts a node selector requirement into a label one.
func requirement(t *testing.T, r corev1.NodeSelectorRequirement) *labels.Requirement {
	t.Helper()
	ops := map[corev1.NodeSelectorOperator]selection.Operator{
		corev1.NodeSelectorOpIn: selection.In, corev1.NodeSelectorOpNotIn: selection.NotIn,
		corev1.NodeSelectorOpExists: selection.Exists, corev1.NodeSelectorOpDoesNotExist: selection.DoesNotExist,
		corev1.NodeSelectorOpGt: selection.GreaterThan, corev1.NodeSelectorOpLt: selection.LessThan,
	}
	op, ok := ops[r.Operator]
	if !ok {
		t.Fatalf("unknown node selector operator %q", r.Operator)
	}
	req, err := labels.NewRequirement(r.Key, op, r.Values)
	if err != nil {
		t.Fatalf("node selector requirement %v: %v", r, err)
	}
	return req
}

// schedulable reports whether the DaemonSet's required node affinity
// admits a node with these labels: any term whose every expression
// matches.
func (m *manifests) schedulable(t *testing.T, node map[string]string) bool {
	t.Helper()
	aff := m.daemonSet.Spec.Template.Spec.Affinity
	if aff == nil || aff.NodeAffinity == nil || aff.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return true
	}
	for _, term := range aff.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		if len(term.MatchFields) > 0 {
			t.Fatal("matchFields: the test evaluates label expressions only")
		}
		ok := true
		for _, e := range term.MatchExpressions {
			ok = ok && requirement(t, e).Matches(labels.Set(node))
		}
		if ok {
			return true
		}
	}
	return false
}

// TestDrainLabelRemovesDaemon guarantees the drain switch: a Linux node
// runs the daemon, the same node labelled sandboxd.io/drain=true does not
// (the DaemonSet controller deletes its pod, which pauses its sandboxes),
// and any other value of the label leaves it running.
func TestDrainLabelRemovesDaemon(t *testing.T) {
	m := load(t)
	linux := map[string]string{"kubernetes.io/os": "linux", "kubernetes.io/hostname": "n1"}
	if !m.schedulable(t, linux) {
		t.Fatal("a plain Linux node does not run the daemon")
	}
	drained := map[string]string{"kubernetes.io/os": "linux", drainLabel: "true"}
	if m.schedulable(t, drained) {
		t.Errorf("a node labelled %s=true still runs the daemon", drainLabel)
	}
	if !m.schedulable(t, map[string]string{"kubernetes.io/os": "linux", drainLabel: "false"}) {
		t.Errorf("a node labelled %s=false does not run the daemon", drainLabel)
	}
}

// TestPolicyFilesAreMounted guarantees that the policy validates with the
// repository's own policy package (a policy typo fails here) and that the
// TLS files it names are keys of the Secret mounted where it names them,
// so the daemon finds its certificate at start.
func TestPolicyFilesAreMounted(t *testing.T) {
	m := load(t)
	pol := m.policy(t)
	tls := map[string]string{"cert_file": pol.Host.TLS.CertFile, "key_file": pol.Host.TLS.KeyFile, "client_ca_file": pol.Host.TLS.ClientCAFile}
	if tls["cert_file"] == "" {
		t.Fatal("the policy has no host.tls: the API off loopback needs it")
	}
	for field, file := range tls {
		if file == "" {
			continue
		}
		vol, key := m.volumeOf(t, file)
		if vol.Secret == nil {
			t.Errorf("host.tls.%s %s is not on a Secret volume", field, file)
			continue
		}
		s := m.secrets[vol.Secret.SecretName]
		if s == nil {
			t.Errorf("Secret %q, mounted for host.tls.%s, is not in the manifests", vol.Secret.SecretName, field)
			continue
		}
		_, inData := s.Data[key]
		_, inString := s.StringData[key]
		if !inData && !inString {
			t.Errorf("Secret %s has no key %q, which host.tls.%s %s names", s.Name, key, field, file)
		}
	}
	if len(pol.Tenants) == 0 {
		t.Error("the policy has no tenants: every TCP caller would need a client certificate")
	}
	if pol.TenantsFile == "" {
		t.Error("the tenants are in the ConfigMap: they belong in the Secret, read through tenants_file")
	}
}

// TestServiceMonitorMatchesMetrics guarantees that the optional
// ServiceMonitor scrapes, through a Service that selects the daemon's
// pods, the port the policy's host.metrics_listen names.
func TestServiceMonitorMatchesMetrics(t *testing.T) {
	m := load(t)
	if len(m.serviceMonitors) != 1 {
		t.Fatalf("%d ServiceMonitors, want 1 (in %s)", len(m.serviceMonitors), optionalFile)
	}
	sm := m.serviceMonitors[0]
	_, port, err := net.SplitHostPort(m.policy(t).Host.MetricsListen)
	if err != nil {
		t.Fatalf("host.metrics_listen: %v", err)
	}
	sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, svc := range m.services {
		if !sel.Matches(labels.Set(svc.Labels)) {
			continue
		}
		if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(m.daemonSet.Spec.Template.Labels)) {
			t.Errorf("Service %s, which the ServiceMonitor selects, does not select the daemon's pods", svc.Name)
		}
		for _, ep := range sm.Spec.Endpoints {
			for _, sp := range svc.Spec.Ports {
				if sp.Name == ep.Port {
					found = true
					if fmt.Sprint(sp.Port) != port || sp.TargetPort.String() != port {
						t.Errorf("Service %s port %s is %d -> %s, want %s (host.metrics_listen)", svc.Name, sp.Name, sp.Port, sp.TargetPort.String(), port)
					}
				}
			}
		}
	}
	if !found {
		t.Error("no Service the ServiceMonitor selects has the port its endpoints name")
	}
}

// kustomization is the part of kustomization.yaml the test reads; any
// other field is an error (strict decoding).
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
}

// TestKustomizationListsManifests guarantees that `kubectl apply -k`
// applies every manifest of the directory but the optional
// ServiceMonitor, each once, and nothing else.
func TestKustomizationListsManifests(t *testing.T) {
	data, err := os.ReadFile(kustomizationFile)
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := decodeStrict(data, &k); err != nil {
		t.Fatalf("%s: %v", kustomizationFile, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("%s is %s %s, want kustomize.config.k8s.io/v1beta1 Kustomization", kustomizationFile, k.APIVersion, k.Kind)
	}
	var want []string
	for _, f := range yamlFiles(t) {
		if f != kustomizationFile && f != optionalFile {
			want = append(want, f)
		}
	}
	got := slices.Sorted(slices.Values(k.Resources))
	if !slices.Equal(got, want) {
		t.Errorf("%s lists %v, want %v", kustomizationFile, got, want)
	}
}

// installed returns the paths the Dockerfile's COPY and ADD lines put in
// the image (an ADDed tar is the directory it unpacks to) and its
// ENTRYPOINT.
func installed(t *testing.T) (map[string]bool, []string) {
	t.Helper()
	data, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	paths := map[string]bool{}
	var entrypoint []string
	for line := range strings.SplitSeq(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "COPY", "ADD":
			if len(f) < 3 {
				t.Fatalf("%s: %q", dockerfile, line)
			}
			dest := f[len(f)-1]
			for _, src := range f[1 : len(f)-1] {
				switch {
				case strings.HasPrefix(src, "--"):
				case strings.HasSuffix(src, ".tar"):
					paths[strings.TrimSuffix(dest, "/")] = true
				case strings.HasSuffix(dest, "/"):
					paths[dest+filepath.Base(src)] = true
				default:
					paths[dest] = true
				}
			}
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(strings.TrimSpace(line[len(f[0]):])), &entrypoint); err != nil {
				t.Fatalf("%s: ENTRYPOINT must be a JSON list: %v", dockerfile, err)
			}
		}
	}
	return paths, entrypoint
}

// TestImageHoldsWhatDaemonSetRuns guarantees that the image built from the
// Dockerfile has what the DaemonSet names: its entrypoint is sandboxd,
// with the sandbox agent beside it (the daemon's default --agent), and
// --runsc, --rootfs and the probe's sandboxd are where the args say.
func TestImageHoldsWhatDaemonSetRuns(t *testing.T) {
	m := load(t)
	c := m.container(t)
	paths, entrypoint := installed(t)
	if len(entrypoint) != 1 || filepath.Base(entrypoint[0]) != "sandboxd" {
		t.Fatalf("ENTRYPOINT %q, want the sandboxd binary alone (the DaemonSet's args are its flags)", entrypoint)
	}
	for what, p := range map[string]string{
		"the entrypoint":               entrypoint[0],
		"the agent beside sandboxd":    filepath.Join(filepath.Dir(entrypoint[0]), "sandbox-agent"),
		"--runsc":                      flagValue(t, c.Args, "runsc"),
		"--rootfs":                     flagValue(t, c.Args, "rootfs"),
		"the readiness probe's binary": c.ReadinessProbe.Exec.Command[0],
	} {
		if !paths[p] {
			t.Errorf("%s, %s, is not installed by the %s (it installs %v)", what, p, dockerfile, slices.Sorted(maps.Keys(paths)))
		}
	}
}
