// A smoke run of the MCP Inspector CLI (pinned in package.json) against the server over stdio.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";

import { PYTHON, SANDBOX_LINE, SERVER_ARGS, TOOL_NAMES, serverEnv, workdir, writeReviews } from "./support.mjs";

const INSPECTOR = join(import.meta.dirname, "..", "node_modules", ".bin", "inspector");

/** Run `inspector --cli --format json` on a fresh server; resolves to {code, json, stderr}. */
function inspect(dir, extra) {
  const env = serverEnv(dir);
  const envArgs = Object.entries(env).flatMap(([key, value]) => ["-e", `${key}=${value}`]);
  const args = ["--cli", "--format", "json", ...envArgs, "--cwd", dir.data, PYTHON, ...SERVER_ARGS, ...extra];
  return new Promise((resolveRun) => {
    execFile(INSPECTOR, args, { timeout: 90_000, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : -1) : 0;
      let json = null;
      try {
        json = JSON.parse(stdout);
      } catch {
        json = null;
      }
      resolveRun({ code, json, stdout, stderr });
    });
  });
}

function describe(run) {
  return `exit ${run.code}\nstdout: ${run.stdout.slice(0, 2000)}\nstderr: ${run.stderr.slice(-3000)}`;
}

test("tools/list --strict: every tool, and no schema portability finding at all", async (t) => {
  const dir = workdir("inspector-strict");
  t.after(dir.cleanup);
  const run = await inspect(dir, ["--method", "tools/list", "--strict"]);
  assert.equal(run.code, 0, describe(run));
  assert.deepEqual(run.json.result.tools.map((tool) => tool.name).sort(), TOOL_NAMES, describe(run));
  // --format json puts the lint findings next to the result when there are any (errors and warnings alike).
  assert.equal(run.json.schemaFindings, undefined, JSON.stringify(run.json.schemaFindings, null, 2));
  assert.doesNotMatch(run.stderr, /^(Error|Warning): tool/m, describe(run));
});

test("tools/list without --strict prints no portability summary either", async (t) => {
  const dir = workdir("inspector-list");
  t.after(dir.cleanup);
  const run = await inspect(dir, ["--method", "tools/list"]);
  assert.equal(run.code, 0, describe(run));
  assert.doesNotMatch(run.stderr, /Schema portability/, describe(run));
});

test("tools/call suggest_schema and list_workspaces answer from the sandbox", async (t) => {
  const dir = workdir("inspector-call");
  t.after(dir.cleanup);
  const file = writeReviews(dir.data);
  const suggested = await inspect(dir, ["--method", "tools/call", "--tool-name", "suggest_schema", "--tool-arg", `path=${file}`]);
  assert.equal(suggested.code, 0, describe(suggested));
  const photo = suggested.json.result.structuredContent.fields.find((field) => field.key === "photo");
  assert.equal(photo?.type, "image_url", describe(suggested));

  const workspaces = await inspect(dir, ["--method", "tools/call", "--tool-name", "list_workspaces"]);
  assert.equal(workspaces.code, 0, describe(workspaces));
  assert.equal(workspaces.json.result.structuredContent.mode, "sandbox");
  assert.ok(workspaces.json.result.content[0].text.startsWith(SANDBOX_LINE));
});

test("a tool error is an isError result (the Inspector exits 5), not a protocol error", async (t) => {
  const dir = workdir("inspector-error");
  t.after(dir.cleanup);
  const run = await inspect(dir, ["--method", "tools/call", "--tool-name", "get_dataset", "--tool-arg", "dataset_id=../etc"]);
  assert.equal(run.code, 5, describe(run));
});

test("resources: the static list and the dataset templates", async (t) => {
  const dir = workdir("inspector-resources");
  t.after(dir.cleanup);
  const resources = await inspect(dir, ["--method", "resources/list"]);
  assert.equal(resources.code, 0, describe(resources));
  const uris = resources.json.result.resources.map((r) => r.uri).sort();
  assert.deepEqual(uris, ["prolific://datasets", "prolific://workspaces"]);

  const templates = await inspect(dir, ["--method", "resources/templates/list"]);
  assert.equal(templates.code, 0, describe(templates));
  const names = templates.json.result.resourceTemplates.map((r) => r.uriTemplate);
  assert.ok(names.includes("prolific://datasets/{dataset_id}"), describe(templates));

  const read = await inspect(dir, ["--method", "resources/read", "--uri", "prolific://workspaces"]);
  assert.equal(read.code, 0, describe(read));
  assert.equal(JSON.parse(read.json.result.contents[0].text).mode, "sandbox");
});

test("the 2026-07-28 era over stdio (--protocol-era modern)", async (t) => {
  const dir = workdir("inspector-modern");
  t.after(dir.cleanup);
  const run = await inspect(dir, ["--protocol-era", "modern", "--method", "tools/list"]);
  assert.equal(run.code, 0, describe(run));
  assert.deepEqual(run.json.result.tools.map((tool) => tool.name).sort(), TOOL_NAMES);
});
