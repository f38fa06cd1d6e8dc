// The unpacked MCP Bundle, started the way its manifest says (server.type "uv"), as far as tools/list.
//
// Run by .ci/ecosystem after `mcpb pack` and `mcpb unpack`: MCPB_UNPACKED is the unpacked folder and UV_BIN the
// uv executable standing in for the one Claude Desktop manages. Both are required: without them this fails.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

import { SANDBOX_LINE, TOOL_NAMES, textOf, workdir } from "../e2e/support.mjs";

const UNPACKED = process.env.MCPB_UNPACKED;
const UV_BIN = process.env.UV_BIN;

/** Replace ${__dirname} and ${user_config.KEY} as the host does. */
function substitute(value, userConfig) {
  return value
    .replaceAll("${__dirname}", UNPACKED)
    .replace(/\$\{user_config\.([a-z_]+)\}/g, (_, key) => {
      assert.ok(key in userConfig, `user_config.${key} is declared in the manifest`);
      return userConfig[key];
    });
}

test("the unpacked bundle starts through uv and lists its tools; no token means the sandbox", async (t) => {
  assert.ok(UNPACKED, "MCPB_UNPACKED must name the unpacked bundle folder");
  assert.ok(UV_BIN, "UV_BIN must name the uv executable");
  const manifest = JSON.parse(readFileSync(join(UNPACKED, "manifest.json"), "utf8"));
  assert.equal(manifest.server.type, "uv");
  const config = manifest.server.mcp_config;
  assert.equal(config.command, "uv");

  const dir = workdir("bundle");
  t.after(dir.cleanup);
  // What a user types into Claude Desktop's settings for this extension: no token, one data folder.
  const userConfig = {};
  for (const [key, field] of Object.entries(manifest.user_config)) {
    userConfig[key] = field.default ?? "";
  }
  userConfig.allowed_directory = dir.data;
  assert.equal(manifest.user_config.prolific_token.sensitive, true);
  assert.equal(manifest.user_config.allowed_directory.type, "directory");

  // The host's own environment reaches uv: here the machine's TLS and proxy settings, and no PROLIFIC_* variable.
  const network = ["SSL_CERT_FILE", "SSL_CERT_DIR", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY"].flatMap((name) =>
    [name, name.toLowerCase()].filter((key) => process.env[key]).map((key) => [key, process.env[key]]),
  );
  const env = {
    ...Object.fromEntries(network),
    PATH: process.env.PATH ?? "",
    HOME: dir.root,
    UV_CACHE_DIR: process.env.UV_CACHE_DIR || join(homedir(), ".cache", "uv"),
    UV_PYTHON_DOWNLOADS: "never",
    ...(process.env.UV_PYTHON ? { UV_PYTHON: process.env.UV_PYTHON } : {}),
  };
  for (const [key, value] of Object.entries(config.env ?? {})) {
    env[key] = substitute(value, userConfig);
  }
  const transport = new StdioClientTransport({
    command: UV_BIN,
    args: config.args.map((arg) => substitute(arg, userConfig)),
    env,
    cwd: "/",
    stderr: "pipe",
  });
  let stderr = "";
  transport.stderr?.on("data", (chunk) => {
    stderr += chunk;
  });
  const client = new Client({ name: "bundle-check", version: "1.0.0" });
  try {
    await client.connect(transport, { timeout: 240_000 });
    assert.equal(client.getServerVersion()?.version, manifest.version);
    const tools = await client.listTools();
    assert.deepEqual(tools.tools.map((tool) => tool.name).sort(), TOOL_NAMES);
    assert.deepEqual(manifest.tools.map((tool) => tool.name).sort(), TOOL_NAMES, "the manifest lists the real tools");
    const workspaces = await client.callTool({ name: "list_workspaces", arguments: {} });
    assert.notEqual(workspaces.isError, true, textOf(workspaces));
    assert.ok(textOf(workspaces).startsWith(SANDBOX_LINE));
  } catch (error) {
    error.message += `\n--- server stderr ---\n${stderr}`;
    throw error;
  } finally {
    await client.close();
  }
});
