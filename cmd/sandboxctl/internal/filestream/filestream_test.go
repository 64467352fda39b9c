package filestream

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"google.golang.org/grpc"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// stream is a Download stream that yields msgs, then end (io.EOF for a
// clean end).
type stream struct {
	grpc.ClientStream
	msgs []*sandboxv1.DownloadResponse
	end  error
}

func (s *stream) Recv() (*sandboxv1.DownloadResponse, error) {
	if len(s.msgs) == 0 {
		return nil, s.end
	}
	m := s.msgs[0]
	s.msgs = s.msgs[1:]
	return m, nil
}

func chunk(s string) *sandboxv1.DownloadResponse {
	return &sandboxv1.DownloadResponse{Msg: &sandboxv1.DownloadResponse_Chunk{Chunk: []byte(s)}}
}

// TestReceive guarantees what Receive accepts: chunks that add up to the
// size the description gave, then the end of the stream; a short or long
// file, a second description, or a failed stream is an error, with the
// bytes written so far counted.
func TestReceive(t *testing.T) {
	info := &sandboxv1.DownloadResponse{Msg: &sandboxv1.DownloadResponse_Info{Info: &sandboxv1.FileInfo{Size: 5}}}
	broken := errors.New("connection reset")
	for _, tc := range []struct {
		name    string
		msgs    []*sandboxv1.DownloadResponse
		end     error
		wantN   int64
		wantErr string
	}{
		{"whole", []*sandboxv1.DownloadResponse{chunk("hel"), chunk("lo")}, io.EOF, 5, ""},
		{"short", []*sandboxv1.DownloadResponse{chunk("hel")}, io.EOF, 3, "incomplete download: got 3 of 5 bytes"},
		{"long", []*sandboxv1.DownloadResponse{chunk("hello!")}, io.EOF, 6, "incomplete download: got 6 of 5 bytes"},
		{"second description", []*sandboxv1.DownloadResponse{chunk("he"), info}, io.EOF, 2, "the daemon sent a second file description"},
		{"stream error", []*sandboxv1.DownloadResponse{chunk("hel")}, broken, 3, "connection reset"},
	} {
		var w bytes.Buffer
		n, err := Receive(&stream{msgs: tc.msgs, end: tc.end}, &w, 5)
		if n != tc.wantN || int64(w.Len()) != n {
			t.Errorf("%s: %d bytes, %d written; want %d", tc.name, n, w.Len(), tc.wantN)
		}
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: err = %v", tc.name, err)
		case tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr):
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.wantErr)
		}
	}
}
