package main

import (
	"context"

	"github.com/sandboxd/sandboxd/cmd/sandboxctl/mcp"
	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// mcpCommand is "sandboxctl mcp"; package mcp does the work.
func mcpCommand() *command {
	cmd := newCommand("mcp", "", "serve the sandboxes to a model as MCP tools", `
The mcp command runs a Model Context Protocol server that gives a model
(Claude Desktop, Claude Code, any MCP client) a sandbox of its own and
tools to use it:

  run_python                   run code in the persistent Python interpreter;
                               figures come back as images
  run_bash                     run a command in the persistent bash session
  str_replace_based_edit_tool  view, create and edit text files
  list_files                   list a directory
  upload_file                  write a file (text, or base64 for binary)
  download_file                read a file (text, image or binary)
  reset_sandbox                destroy the sandbox; the next call gets a
                               fresh one

Each MCP session gets one sandbox, created from the template's pool at its
first tool call and destroyed when the session ends; a client that vanishes
without ending its session leaves the sandbox to the template's idle
timeout. Failures the model can act on (an exception, a non-zero exit, a
timeout, running out of memory, a str_replace that does not match) are tool
results marked as errors, with the reason.

By default the server speaks MCP over standard input and output, one
session, as MCP clients start local servers:

  {"mcpServers": {"sandbox": {"command": "sandboxctl", "args": ["mcp"]}}}

With --http it serves streamable HTTP at http://ADDR/mcp instead, a session
per client, and says so on standard error. ADDR must be a loopback address
(127.0.0.1:8931, [::1]:8931, localhost:8931; port 0 picks a free one): the
daemon's API has no authentication yet.

--template, --label and the limit flags apply to every session's sandbox,
as for "sandboxctl create". The server notes each sandbox it creates or
destroys on standard error.`, 0, 0)
	httpAddr := cmd.flags.String("http", "", "serve streamable HTTP on the loopback `ADDR` (HOST:PORT) instead of standard input and output")
	template := cmd.flags.String("template", "", "policy `NAME` of the template of the sandboxes (default: the policy's default template)")
	labels := keyValues{}
	cmd.flags.Var(labels, "label", "attach label `KEY=VALUE` to every sandbox (repeatable)")
	limits := addLimitFlags(cmd.flags)

	cmd.run = func(ctx context.Context, c *cli, _ []string) error {
		if *httpAddr != "" {
			if err := mcp.CheckLoopback(*httpAddr); err != nil {
				return usagef("--http: %v", err)
			}
		}
		client, err := c.client()
		if err != nil {
			return err
		}
		server := mcp.New(mcp.Config{
			Client:   client,
			Create:   &sandboxv1.CreateSandboxRequest{Template: *template, Labels: labels, Limits: limitsRequest(limits)},
			Describe: c.describe,
			Note:     func(msg string) { c.note(cmd.name, msg) },
		})
		if *httpAddr == "" {
			return server.ServeStdio(ctx, c.stdin, c.stdout)
		}
		return server.ServeHTTP(ctx, *httpAddr, func(url string) { c.note(cmd.name, "serving MCP at "+url) })
	}
	return cmd
}
