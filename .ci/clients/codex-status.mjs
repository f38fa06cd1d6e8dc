// Asks Codex for the status of one MCP server, the way its own `/mcp` view does: `codex app-server` (JSON-RPC over
// stdio) connects to every server configured in $CODEX_HOME/config.toml and answers `mcpServerStatus/list` with
// each one's tools. `codex mcp get` only reads the configuration; this connects.
//
//   node codex-status.mjs NAME [codex options...]
// Prints "NAME: connected, N tools (...)" and exits 0 when the server answered with its tools; exits 1 otherwise.
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const [name, ...codexOptions] = process.argv.slice(2);
if (!name) {
  console.error("usage: node codex-status.mjs NAME [codex options...]");
  process.exit(2);
}
const codex = join(dirname(fileURLToPath(import.meta.url)), "node_modules", ".bin", "codex");
const child = spawn(codex, ["app-server", ...codexOptions], { stdio: ["pipe", "pipe", "pipe"] });
let stderr = "";
child.stderr.on("data", (chunk) => {
  stderr += chunk;
});
const finish = (code, message) => {
  (code === 0 ? console.log : console.error)(message);
  if (code !== 0 && stderr) console.error(`codex app-server stderr (last 2,000 characters):\n${stderr.slice(-2000)}`);
  child.stdin.end();
  child.kill("SIGTERM");
  process.exit(code);
};
const timer = setTimeout(() => finish(1, `${name}: no answer from codex app-server within 60 s`), 60_000);
child.on("exit", (code) => finish(1, `codex app-server exited (${code}) before answering`));

const send = (message) => child.stdin.write(`${JSON.stringify(message)}\n`);
createInterface({ input: child.stdout }).on("line", (line) => {
  let message;
  try {
    message = JSON.parse(line);
  } catch {
    return;
  }
  if (message.id === 1) {
    send({ method: "initialized" });
    send({ id: 2, method: "mcpServerStatus/list", params: { detail: "toolsAndAuthOnly" } });
  } else if (message.id === 2) {
    clearTimeout(timer);
    if (message.error) finish(1, `mcpServerStatus/list failed: ${JSON.stringify(message.error)}`);
    const status = (message.result?.data ?? []).find((server) => server.name === name);
    const tools = Object.keys(status?.tools ?? {}).sort();
    if (!status) finish(1, `${name}: not among the servers Codex knows`);
    if (tools.length === 0) finish(1, `${name}: Codex reached no tools (${JSON.stringify(status)})`);
    finish(0, `${name}: connected, ${tools.length} tools (${tools.join(", ")})`);
  }
});
send({ id: 1, method: "initialize", params: { clientInfo: { name: "prolific-datasets-mcp-ci", version: "1" } } });
