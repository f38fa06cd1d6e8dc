// Shared helpers: how the tests start prolific-datasets-mcp, the data they upload, and the flow they drive.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join, resolve } from "node:path";

export const REPO_ROOT = resolve(import.meta.dirname, "..", "..", "..");
/** The Python that runs the server: PROLIFIC_MCP_PYTHON (CI sets the .ci-venv one), else python3 on PATH. */
export const PYTHON = process.env.PROLIFIC_MCP_PYTHON || "python3";
export const SERVER_ARGS = ["-m", "prolific_mcp"];
export const TOOL_NAMES = [
  "append_records",
  "create_dataset",
  "get_dataset",
  "get_import_status",
  "list_datasets",
  "list_workspaces",
  "set_schema",
  "suggest_schema",
  "upload_file",
  "validate_file",
];
export const SANDBOX_LINE = "SANDBOX: nothing here reaches Prolific.";
export const FIELDS = [
  { key: "review", type: "text", label: "Review" },
  { key: "photo", type: "image_url" },
  { key: "source", type: "metadata" },
];

/** A fresh folder with data/ (the allowed directory) and state/, removed by the returned cleanup. */
export function workdir(prefix) {
  const root = mkdtempSync(join(tmpdir(), `${prefix}-`));
  const data = join(root, "data");
  mkdirSync(data);
  return { root, data, state: join(root, "state"), cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

/**
 * The server's whole environment, built from nothing: the sandbox (no token), its own state and allowed
 * directory, and this checkout's package first on the import path. Nothing of the caller's PROLIFIC_* leaks in.
 */
export function serverEnv(dir, extra = {}) {
  const pythonPath = [REPO_ROOT, process.env.PYTHONPATH].filter(Boolean).join(delimiter);
  return {
    PATH: process.env.PATH ?? "",
    HOME: dir.root,
    PYTHONPATH: pythonPath,
    PROLIFIC_MODE: "sandbox",
    PROLIFIC_MCP_STATE_DIR: dir.state,
    PROLIFIC_MCP_ALLOWED_DIRS: dir.data,
    ...extra,
  };
}

/** Six reviews; the third has an ftp:// photo, which Prolific rejects (record 3). */
export function writeReviews(folder, name = "reviews.jsonl") {
  const rows = [];
  for (let i = 0; i < 6; i += 1) {
    rows.push({ review: `Review number ${i}`, photo: `https://img.example.com/${i}.png`, source: `s${i % 3}` });
  }
  rows[2].photo = "ftp://nope.example.com/2.png";
  writeFileSync(join(folder, name), rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
  return name;
}

export function textOf(result) {
  return result.content
    .filter((block) => block.type === "text")
    .map((block) => block.text)
    .join("\n");
}

/** Call a tool that must succeed; the error text is in the assertion message when it does not. */
export async function callOk(client, name, args, options = {}) {
  const result = await client.callTool({ name, arguments: args }, undefined, { timeout: 120_000, ...options });
  assert.notEqual(result.isError, true, `${name} failed: ${textOf(result)}`);
  return result;
}

/**
 * The job, as an agent does it: list the tools, create a dataset, upload a file while receiving progress
 * notifications, read the summary, then read the dataset resource.
 */
export async function mainFlow(client, dataDir) {
  const tools = await client.listTools();
  assert.deepEqual(tools.tools.map((t) => t.name).sort(), TOOL_NAMES);
  for (const tool of tools.tools) {
    assert.ok(tool.outputSchema, `${tool.name} has an output schema`);
    assert.ok(tool.annotations, `${tool.name} has annotations`);
  }

  const created = await callOk(client, "create_dataset", { name: "TypeScript client", fields: FIELDS, strict: true });
  assert.ok(textOf(created).startsWith(SANDBOX_LINE));
  const datasetId = created.structuredContent.id;
  assert.match(datasetId, /^[0-9a-zA-Z-]+$/);

  const file = writeReviews(dataDir);
  const progress = [];
  const uploaded = await callOk(
    client,
    "upload_file",
    { dataset_id: datasetId, path: file, wait_seconds: 60 },
    { onprogress: (p) => progress.push(p), resetTimeoutOnProgress: true },
  );
  const outcome = uploaded.structuredContent;
  assert.equal(outcome.status, "partial");
  assert.equal(outcome.accepted_count, 5);
  assert.equal(outcome.rejected_count, 1);

  const summary = textOf(uploaded);
  assert.match(summary, /record 3/);
  assert.match(summary, /photo/);
  const links = uploaded.content.filter((block) => block.type === "resource_link").map((block) => block.uri);
  assert.ok(links.includes(`prolific://datasets/${datasetId}`), `links: ${links}`);

  assert.ok(progress.length >= 2, `progress notifications arrive (got ${progress.length})`);
  for (let i = 1; i < progress.length; i += 1) {
    assert.ok(progress[i].progress > progress[i - 1].progress, `progress only rises: ${JSON.stringify(progress)}`);
  }
  assert.ok(progress.every((p) => p.total === 100 && typeof p.message === "string" && p.message.length > 0));

  const view = await client.readResource({ uri: `prolific://datasets/${datasetId}` });
  assert.equal(view.contents.length, 1);
  assert.match(view.contents[0].text, /Datapoints: 5/);
  assert.match(view.contents[0].text, /partial/);
  return datasetId;
}

/** A free loopback port (the server is then told to bind it). */
export function freePort() {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolvePort(port));
    });
  });
}

/** Start a child process; its stderr is kept (for failure messages) and it is ended by stop(). */
export function startProcess(command, args, options) {
  const child = spawn(command, args, { ...options, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (chunk) => {
    output += chunk;
  });
  child.stderr.on("data", (chunk) => {
    output += chunk;
  });
  const exited = new Promise((resolveExit) => child.once("exit", (code, signal) => resolveExit({ code, signal })));
  return {
    child,
    output: () => output,
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
        await exited;
        clearTimeout(timer);
      }
    },
  };
}

/** Poll `url` until the HTTP server answers (any status), or fail after `seconds`. */
export async function waitForHttp(url, seconds, proc) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    try {
      await fetch(url, { method: "GET", signal: AbortSignal.timeout(2000) });
      return;
    } catch (error) {
      if (proc.child.exitCode !== null || Date.now() > deadline) {
        throw new Error(`the server did not answer at ${url}: ${error}\n${proc.output()}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}
