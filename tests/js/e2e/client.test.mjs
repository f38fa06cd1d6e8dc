// The official TypeScript SDK client drives the server over stdio and over streamable HTTP.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

import {
  PYTHON,
  SERVER_ARGS,
  freePort,
  mainFlow,
  serverEnv,
  startProcess,
  waitForHttp,
  workdir,
} from "./support.mjs";

const CLIENT_INFO = { name: "prolific-datasets-mcp-ts-test", version: "1.0.0" };
const HTTP_TOKEN = "ts-client-http-token-0123456789abcdef";

test("stdio: the TypeScript SDK client lists tools, creates, uploads with progress, reads", async (t) => {
  const dir = workdir("ts-stdio");
  t.after(dir.cleanup);
  const transport = new StdioClientTransport({
    command: PYTHON,
    args: SERVER_ARGS,
    env: serverEnv(dir),
    cwd: dir.data,
    stderr: "pipe",
  });
  let stderr = "";
  transport.stderr?.on("data", (chunk) => {
    stderr += chunk;
  });
  const client = new Client(CLIENT_INFO);
  try {
    await client.connect(transport);
    assert.equal(client.getServerVersion()?.name, "prolific-datasets");
    assert.match(client.getInstructions() ?? "", /^SANDBOX: nothing here reaches Prolific\./);
    await mainFlow(client, dir.data);
  } catch (error) {
    error.message += `\n--- server stderr ---\n${stderr}`;
    throw error;
  } finally {
    await client.close();
  }
});

test("streamable HTTP: the same flow, with the bearer token; none or a wrong one is refused", async (t) => {
  const dir = workdir("ts-http");
  t.after(dir.cleanup);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/mcp`;
  const server = startProcess(PYTHON, [...SERVER_ARGS, "--http", "--port", String(port)], {
    env: serverEnv(dir, { PROLIFIC_MCP_HTTP_TOKEN: HTTP_TOKEN }),
    cwd: dir.data,
  });
  t.after(() => server.stop());
  await waitForHttp(url, 60, server);

  const ping = { jsonrpc: "2.0", id: 1, method: "ping" };
  const headers = { "content-type": "application/json", accept: "application/json, text/event-stream" };
  const anonymous = await fetch(url, { method: "POST", headers, body: JSON.stringify(ping) });
  assert.equal(anonymous.status, 401);
  const wrong = await fetch(url, {
    method: "POST",
    headers: { ...headers, authorization: "Bearer wrong" },
    body: JSON.stringify(ping),
  });
  assert.equal(wrong.status, 401);

  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${HTTP_TOKEN}` } },
  });
  const client = new Client(CLIENT_INFO);
  try {
    await client.connect(transport);
    assert.equal(client.getServerVersion()?.name, "prolific-datasets");
    await mainFlow(client, dir.data);
  } catch (error) {
    error.message += `\n--- server output ---\n${server.output()}`;
    throw error;
  } finally {
    await client.close();
  }
  assert.ok(!server.output().includes(HTTP_TOKEN), "the token never appears in the server's output");
});
