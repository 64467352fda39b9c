// Package kubernetes holds the Kubernetes manifests that run sandboxd as a
// DaemonSet, one daemon per node (the YAML files and the Dockerfile in this
// directory). It has no Go code: its test decodes every manifest strictly
// into the Kubernetes API types and checks that they agree with each other
// and with the daemon (flags, policy, ports, paths).
package kubernetes
