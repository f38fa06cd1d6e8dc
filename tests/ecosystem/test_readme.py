"""The README for users: every command in it is run here or by .ci/ecosystem, and every client set-up is checked.

Each command line of the README's sh blocks must appear in COVERAGE with where it is exercised; a command added to
the README without a place that runs it fails `test_every_command_is_exercised`.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
import pytest

import prolific_mcp
from prolific_mcp.server.app import build_server
from prolific_mcp.settings import ENV_VARS, load_settings
from tests.ecosystem.readme import CHECKOUT, NAMED, README, SERVER, code_blocks, commands, named, section

REPO_ROOT = Path(prolific_mcp.__file__).resolve().parents[1]
CI_ECOSYSTEM = (REPO_ROOT / ".ci" / "ecosystem").read_text(encoding="utf-8")
CI_RUN = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
SERVER_COMMAND = [SERVER]
"""What every client configuration starts today: the server in the checkout's .venv."""
PUBLISHED_COMMAND = ["uvx", "prolific-datasets-mcp"]
"""What it starts once the package is on PyPI."""
TEXT = README.read_text(encoding="utf-8")

COVERAGE = {
    "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/prolific-datasets-mcp demo": (
        ".ci/ecosystem runs it verbatim (readme.py quickstart) in a scratch copy of the sources"
    ),
    "bash .ci/run": "CI itself",
    ".ci-venv/bin/python -m bench quick": ".ci/run runs it verbatim (its venv is .ci-venv)",
    named("claude-add"): ".ci/ecosystem: Claude Code runs it verbatim (readme.py claude-add), checkout substituted",
    named("claude-get"): ".ci/ecosystem: Claude Code runs it verbatim and must report the server connected",
    named("gemini-add"): ".ci/ecosystem: Gemini CLI runs it verbatim (readme.py gemini-add), checkout substituted",
    named("gemini-list"): ".ci/ecosystem: Gemini CLI runs it verbatim and must report the server connected",
    named("codex-get"): ".ci/ecosystem: Codex runs it verbatim on the README's config.toml",
    named("doctor"): ".ci/ecosystem runs it verbatim (readme.py doctor) in the checkout the install line made",
    named("published-claude-add"): ".ci/ecosystem: Claude Code runs it with uvx taking the built wheel",
    named("published-gemini-add"): ".ci/ecosystem: Gemini CLI runs it with uvx taking the built wheel",
    named("uvx-doctor"): ".ci/ecosystem runs it verbatim (readme.py uvx-doctor) with the built wheel",
    ".venv/bin/prolific-datasets-mcp --http --port 8765": "test_http_command (on a free port)",
    "prolific-datasets-mcp sandbox": "test_sandbox_commands",
    "curl -s -H 'Authorization: Token anything' http://127.0.0.1:34815/api/v1/workspaces/": "test_sandbox_commands",
}


def blocks(language: str) -> list[str]:
    return [body for lang, body in code_blocks() if lang == language]


def json_configs() -> list[dict[str, Any]]:
    return [json.loads(body) for body in blocks("json")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(REPO_ROOT),
        "PROLIFIC_MCP_STATE_DIR": str(tmp_path / "state"),
    }


def test_the_first_lines_stay_what_they_were() -> None:
    lines = TEXT.splitlines()
    assert lines[0] == "# prolific-datasets-mcp"
    first_block = code_blocks()[0]
    assert first_block[0] == "sh"
    assert commands(f"```sh\n{first_block[1]}```\n") == [named("quickstart"), "bash .ci/run"]
    assert "<!-- mcp-name: io.github.prolific-datasets-mcp/prolific-datasets-mcp -->" in TEXT


def test_every_command_is_exercised() -> None:
    assert sorted(commands()) == sorted(COVERAGE), "a README command has no place that runs it (COVERAGE)"
    for name in NAMED:
        assert f"readme {name}" in CI_ECOSYSTEM or f"readme.py {name}" in CI_ECOSYSTEM, name
    for name in ("claude-mcp-json", "gemini-settings", "codex-config"):
        assert name in CI_ECOSYSTEM, name
    assert ".ci/ecosystem" in CI_RUN


def test_claude_code_setup() -> None:
    argv = shlex.split(named("claude-add"))
    assert argv[:4] == ["claude", "mcp", "add", "prolific-datasets"], "the name comes before the options"
    dash = argv.index("--")
    assert argv[dash + 1 :] == SERVER_COMMAND
    options = argv[4:dash]
    assert options == ["--scope", "project", "-e", "PROLIFIC_TOKEN=${PROLIFIC_TOKEN:-}"], (
        "the token is expanded by Claude Code, never written"
    )
    server = json.loads(block_in("### Claude Code", "json"))["mcpServers"]["prolific-datasets"]
    assert [server["command"], *server["args"]] == SERVER_COMMAND
    assert server["env"] == {"PROLIFIC_TOKEN": "${PROLIFIC_TOKEN:-}"}
    assert named("claude-get") == "claude mcp get prolific-datasets"


def test_gemini_cli_setup_puts_the_token_in_the_servers_own_env() -> None:
    argv = shlex.split(named("gemini-add"))
    token = "PROLIFIC_TOKEN=$PROLIFIC_TOKEN"
    assert argv == ["gemini", "mcp", "add", "-e", token, "prolific-datasets", *SERVER_COMMAND]
    server = json.loads(block_in("### Gemini CLI", "json"))["mcpServers"]["prolific-datasets"]
    assert [server["command"], *server["args"]] == SERVER_COMMAND
    assert server["env"] == {"PROLIFIC_TOKEN": "$PROLIFIC_TOKEN"}
    assert "TOKEN" in section("### Gemini CLI") and "own `env`" in section("### Gemini CLI")


def test_the_published_lines_differ_only_by_the_command() -> None:
    server = " ".join(SERVER_COMMAND)
    published = " ".join(PUBLISHED_COMMAND)
    assert named("published-claude-add") == named("claude-add").replace(server, published)
    assert named("published-gemini-add") == named("gemini-add").replace(server, published)
    assert named("uvx-doctor") == named("doctor").replace(server, published)
    assert "not on PyPI yet" in section("## Set it up in your MCP client")
    assert "These start working when" in section("### Once the package is on PyPI")


def test_the_agents_sdk_snippet_waits_longer_than_a_tool_and_passes_the_token() -> None:
    (snippet,) = [body for lang, body in code_blocks(section("### OpenAI Agents SDK")) if lang == "python"]
    tree = ast.parse(snippet)
    (call,) = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "MCPServerStdio"]
    keywords = {k.arg: k.value for k in call.keywords}
    timeout = ast.literal_eval(keywords["client_session_timeout_seconds"])
    assert timeout > load_settings({"PROLIFIC_MODE": "sandbox"}).wait_seconds, "the SDK would end a waiting call"
    params = keywords["params"]
    assert isinstance(params, ast.Dict)
    fields = {ast.literal_eval(k): v for k, v in zip(params.keys, params.values, strict=True) if k is not None}
    assert ast.literal_eval(fields["command"]) == SERVER
    env = fields["env"]
    assert isinstance(env, ast.Dict)
    assert [ast.literal_eval(k) for k in env.keys if k is not None] == ["PROLIFIC_TOKEN"]
    assert "os.environ" in ast.unparse(env), "the token comes from the environment, never written"


def block_in(heading: str, language: str) -> str:
    (body,) = [body for lang, body in code_blocks(section(heading)) if lang == language]
    return body


def named_line(prefix: str) -> str:
    (line,) = [c for c in commands() if c.startswith(prefix)]
    return line


def test_every_client_config_starts_the_same_server_and_writes_no_token() -> None:
    servers: list[dict[str, Any]] = []
    for config in json_configs():
        servers.extend((config.get("mcpServers") or config.get("servers") or {}).values())
    codex = [tomllib.loads(body) for body in blocks("toml")]
    assert len(codex) == 1
    servers.append(codex[0]["mcp_servers"]["prolific-datasets"])
    assert len(servers) == 6, "Claude Code, Gemini CLI, Codex, Cursor, VS Code, Claude Desktop"
    for server in servers:
        assert [server["command"], *server.get("args", [])] == SERVER_COMMAND
        assert server["command"].startswith(CHECKOUT)
        for key, value in server.get("env", {}).items():
            assert key in ENV_VARS.values(), key
            if key == "PROLIFIC_TOKEN":
                assert re.fullmatch(r"\$\{[^}]+\}|\$[A-Z_]+", value), f"{value!r} must be a placeholder, not a token"
    assert codex[0]["mcp_servers"]["prolific-datasets"]["env_vars"] == ["PROLIFIC_TOKEN", "PROLIFIC_MCP_ALLOWED_DIRS"]


def test_vs_code_asks_for_the_token_as_a_password() -> None:
    config = next(c for c in json_configs() if "servers" in c)
    (prompt,) = config["inputs"]
    assert prompt["password"] is True
    assert config["servers"]["prolific-datasets"]["env"]["PROLIFIC_TOKEN"] == "${input:" + prompt["id"] + "}"


def test_the_cursor_deeplink_installs_the_cursor_config() -> None:
    (link,) = re.findall(r"\((cursor://[^)]+)\)", TEXT)
    parts = urlsplit(link)
    assert (parts.netloc, parts.path) == ("anysphere.cursor-deeplink", "/mcp/install")
    query = parse_qs(parts.query)
    (name,) = query["name"]
    (encoded,) = query["config"]
    decoded = json.loads(base64.b64decode(encoded))
    cursor = next(c for c in json_configs() if "env:PROLIFIC_TOKEN" in json.dumps(c))
    published = {**cursor["mcpServers"][name], "command": PUBLISHED_COMMAND[0], "args": PUBLISHED_COMMAND[1:]}
    assert decoded == published, "the link installs the Cursor configuration, with uvx"
    assert link in section("### Once the package is on PyPI")


def test_the_tools_and_resources_tables_match_the_server(tmp_path: Path) -> None:
    settings = load_settings({"PROLIFIC_MODE": "sandbox", "HOME": str(tmp_path)})
    server = build_server(settings)

    async def listing() -> tuple[set[str], set[str]]:
        tools = {t.name for t in await server.list_tools()}
        resources = {str(r.uri) for r in await server.list_resources()}
        resources |= {t.uri_template for t in await server.list_resource_templates()}
        return tools, resources

    tools, resources = anyio.run(listing)
    tool_table = re.search(r"\| Tool \|.*?\n\n", TEXT, re.S)
    resource_table = re.search(r"\| Resource \|.*?\n\n", TEXT, re.S)
    assert tool_table and resource_table
    assert set(re.findall(r"^\| `([a-z_]+)` \|", tool_table.group(0), re.M)) == tools
    assert set(re.findall(r"^\| `(prolific://[^`]+)` \|", resource_table.group(0), re.M)) == resources


def test_the_settings_table_lists_every_setting() -> None:
    table = TEXT[TEXT.index("## Settings") : TEXT.index("## Troubleshooting")]
    listed = set(re.findall(r"^\| `([A-Z_]+)`", table, re.M)) | set(re.findall(r"alias `([A-Z_]+)`", table))
    assert listed == set(ENV_VARS.values())


def test_sandbox_commands(tmp_path: Path) -> None:
    """`prolific-datasets-mcp sandbox` as written (free ports), then the README's curl line against it."""
    assert named_line("prolific-datasets-mcp sandbox") == "prolific-datasets-mcp sandbox"
    proc = subprocess.Popen(
        [sys.executable, "-m", "prolific_mcp", "sandbox"],
        env=child_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        match = re.match(r"Prolific sandbox ready at (http://127\.0\.0\.1:\d+) ", ready)
        assert match, ready
        shown = re.search(r"http://127\.0\.0\.1:\d+", named_line("curl "))
        assert shown
        argv = shlex.split(named_line("curl ").replace(shown.group(0), match.group(1)))
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
        body = json.loads(result.stdout)
        titles = [w["title"] for w in body["results"]]
        assert titles == ["Sandbox workspace", "Sandbox workspace without typed datasets"]
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_http_command(tmp_path: Path) -> None:
    """`prolific-datasets-mcp --http --port P`: no token set, so one is generated and printed once to stderr."""
    argv = shlex.split(named_line(".venv/bin/prolific-datasets-mcp --http"))
    assert argv == [".venv/bin/prolific-datasets-mcp", "--http", "--port", "8765"]
    port = free_port()
    data = tmp_path / "data"
    data.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "prolific_mcp", *argv[1:3], str(port)],
        env=child_env(tmp_path),
        cwd=data,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        # The start-up lines (version, mode, directories) come first; the token is on the "serving" line.
        serving = re.compile(rf"serving MCP on http://127\.0\.0\.1:{port}/mcp; send 'Authorization: Bearer (\S+)'")
        seen: list[str] = []
        match = None
        while match is None and len(seen) < 20:
            seen.append(proc.stderr.readline())
            match = serving.search(seen[-1])
            if not seen[-1]:
                break
        assert match, "".join(seen)
        url, token = f"http://127.0.0.1:{port}/mcp", match.group(1)
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        headers = {"Accept": "application/json, text/event-stream"}
        with httpx2.Client(timeout=10) as http:
            refused = post_when_up(http, url, ping, headers)
            assert refused.status_code == 401
            init = {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "readme-test", "version": "1"},
                },
            }
            accepted = http.post(url, json=init, headers={**headers, "Authorization": f"Bearer {token}"})
            assert accepted.status_code == 200, accepted.text
            assert "prolific-datasets" in accepted.text
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    assert token not in err, "the token is printed once, at start-up"


def post_when_up(http: httpx2.Client, url: str, body: dict[str, Any], headers: dict[str, str]) -> httpx2.Response:
    """POST once the server accepts connections (it prints its token before uvicorn is listening)."""
    for _ in range(200):
        try:
            return http.post(url, json=body, headers=headers)
        except httpx2.ConnectError:
            time.sleep(0.05)
    return http.post(url, json=body, headers=headers)


@pytest.mark.parametrize(
    "heading",
    [
        "### Claude Code",
        "### Gemini CLI",
        "### Codex",
        "### Cursor",
        "### VS Code",
        "### Claude Desktop",
        "### OpenAI Agents SDK",
    ],
)
def test_each_client_has_its_section(heading: str) -> None:
    assert f"\n{heading}\n" in TEXT
