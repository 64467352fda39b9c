// Package e2e holds sandboxd's end-to-end tests: they build the daemon (with
// the race detector), the agent and the CLI, start the daemon on a temporary
// socket and state directory, and drive real gVisor sandboxes over gRPC.
// They need root, runsc and the rootfs; `make test` provides all three and
// sets SANDBOXD_E2E=1, which turns a missing prerequisite into a failure
// instead of a skip.
package e2e
