// Package filestream reads the file streams of sandbox.v1.SandboxService on
// the client's side, for the sandboxctl verbs and bench alike.
package filestream

import (
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// Receive copies the chunks of a Download stream, whose first message (the
// file's description) the caller has read, to w until the stream ends, and
// checks that they add up to size bytes. It returns the bytes written.
func Receive(stream grpc.ServerStreamingClient[sandboxv1.DownloadResponse], w io.Writer, size int64) (int64, error) {
	var n int64
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, err
		}
		chunk, ok := msg.GetMsg().(*sandboxv1.DownloadResponse_Chunk)
		if !ok {
			return n, errors.New("the daemon sent a second file description")
		}
		m, err := w.Write(chunk.Chunk)
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
	if n != size {
		return n, fmt.Errorf("incomplete download: got %d of %d bytes", n, size)
	}
	return n, nil
}
