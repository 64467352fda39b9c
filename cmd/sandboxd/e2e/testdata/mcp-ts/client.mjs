// An MCP client on the reference TypeScript SDK, for the interop test in
// cmd/sandboxd/e2e/mcp_test.go: it starts `SANDBOXCTL mcp ARGS...` over
// stdio, lists the tools, calls run_python and str_replace_based_edit_tool,
// and prints what it got as one JSON object on stdout.
//
//	node client.mjs SANDBOXCTL [ARGS...]
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const [command, ...args] = process.argv.slice(2);
const transport = new StdioClientTransport({ command, args: ["mcp", ...args], stderr: "inherit" });
const client = new Client({ name: "sandboxd-e2e-ts", version: "1.0.0" });
await client.connect(transport);

const call = (name, args) => client.callTool({ name, arguments: args });
const out = {
  server: client.getServerVersion(),
  tools: (await client.listTools()).tools,
  python: await call("run_python", { code: "print('hi')\n6 * 7" }),
  figure: await call("run_python", { code: "import matplotlib.pyplot as plt\n_ = plt.plot([1, 3, 2])" }),
  create: await call("str_replace_based_edit_tool", { command: "create", path: "ts.txt", file_text: "one\ntwo\n" }),
  replace: await call("str_replace_based_edit_tool", { command: "str_replace", path: "ts.txt", old_str: "two", new_str: "three" }),
  view: await call("str_replace_based_edit_tool", { command: "view", path: "ts.txt" }),
  noMatch: await call("str_replace_based_edit_tool", { command: "str_replace", path: "ts.txt", old_str: "four", new_str: "five" }),
};
await client.close();
console.log(JSON.stringify(out));
