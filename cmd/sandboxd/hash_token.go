package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

// minTokenBytes is the shortest token hash-token accepts: 16 bytes (e.g. a
// 32-character hex string from `openssl rand -hex 16`) leaves no room for
// guessing; a token is the whole of a tenant's credential.
const minTokenBytes = 16

// hashToken prints the policy form of a bearer token, "sha256:HEX", for
// tenants.NAME.tokens. The token is read from standard input (its first
// line), not from the command line, where ps and shell history would
// show it.
func hashToken(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) != 0 {
		fmt.Fprintln(stderr, "usage: sandboxd hash-token < TOKEN_FILE   (the token on standard input, e.g. `openssl rand -hex 32 | tee token | sandboxd hash-token`)")
		return 2
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
	if err != nil && err != io.EOF {
		fmt.Fprintf(stderr, "sandboxd: hash-token: reading the token: %v\n", err)
		return 1
	}
	token := strings.TrimRight(line, "\r\n")
	if len(token) < minTokenBytes || strings.ContainsAny(token, " \t") {
		fmt.Fprintf(stderr, "sandboxd: hash-token: a token must be at least %d characters without spaces, e.g. from `openssl rand -hex 32`\n", minTokenBytes)
		return 1
	}
	sum := sha256.Sum256([]byte(token))
	fmt.Fprintf(stdout, "sha256:%s\n", hex.EncodeToString(sum[:]))
	return 0
}
