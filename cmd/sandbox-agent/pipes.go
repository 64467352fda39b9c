package main

// This file creates the pipes of an Exec and makes sure none leaks.

import (
	"os"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// pipeSet remembers the pipes it made so that closeAll can close every end
// still open, whatever path the Exec took. Closing an end twice is harmless.
type pipeSet struct {
	files []*os.File
}

// pipe returns a new pipe whose ends pipeSet closes at the latest in closeAll.
func (s *pipeSet) pipe() (r, w *os.File, err error) {
	r, w, err = os.Pipe()
	if err != nil {
		return nil, nil, status.Errorf(codes.Internal, "creating a pipe: %v", err)
	}
	s.files = append(s.files, r, w)
	return r, w, nil
}

// closeAll closes both ends of every pipe.
func (s *pipeSet) closeAll() {
	for _, f := range s.files {
		f.Close()
	}
}
