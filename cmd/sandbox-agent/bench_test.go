package main

import "testing"

// BenchmarkPythonExec measures a trivial Python Exec round trip through the
// agent on a warm interpreter.
func BenchmarkPythonExec(b *testing.B) {
	a := startAgent(b)
	a.run(b, pyReq("1"))
	for b.Loop() {
		if o := a.run(b, pyReq("1")); o.result.Status != ok {
			b.Fatal(o.result)
		}
	}
}

// BenchmarkBashExec measures a trivial bash Exec round trip through the
// agent (a new bash each time).
func BenchmarkBashExec(b *testing.B) {
	a := startAgent(b)
	for b.Loop() {
		if o := a.run(b, bashReq("true")); o.result.Status != ok {
			b.Fatal(o.result)
		}
	}
}
