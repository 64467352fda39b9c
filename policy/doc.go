// Package policy defines sandboxd's policy file: the YAML document in which
// an operator sets host-wide limits, the sandbox templates (rootfs, resource
// limits, timeouts, environment, modules to import while warming, network
// and egress allowlist) and the warm pools kept for them.
//
// [Load] and [Parse] read a policy strictly: unknown fields, values out of
// range and inconsistent settings are all reported together in one
// [*ValidationError], each with its file, line and field path. [Default]
// returns the policy embedded from default.yaml, used when the daemon is
// started without one. README.md in this directory documents every field.
package policy
