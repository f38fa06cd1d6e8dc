"""What the registry, PyPI and Claude Desktop read about the server: server.json, pyproject.toml, the bundle manifest.

server.json is validated against a copy of the official registry schema 2025-12-11 (schemas/, see its README.md).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import prolific_mcp
from prolific_mcp.settings import ENV_VARS

ROOT = Path(prolific_mcp.__file__).resolve().parents[1]
SCHEMA_FILE = Path(__file__).parent / "schemas" / "server.schema.2025-12-11.json"
SCHEMA_SHA256 = "b482eb1ff78a30d9a2df3bfbd549637e61cd60db23aef95a2c3c9ec498003ab3"
SCHEMA_URL = "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"
SERVER_JSON: dict[str, Any] = json.loads((ROOT / "server.json").read_text(encoding="utf-8"))
PYPROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
MANIFEST: dict[str, Any] = json.loads((ROOT / "packaging" / "manifest.json").read_text(encoding="utf-8"))
TOOL_NAMES = {
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
}


def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def test_the_schema_copy_is_the_published_2025_12_11_file() -> None:
    assert hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest() == SCHEMA_SHA256
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert schema["$id"] == SCHEMA_URL
    jsonschema.Draft7Validator.check_schema(schema)


def test_server_json_is_valid_against_the_registry_schema() -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator().iter_errors(SERVER_JSON)]
    assert errors == []
    assert SERVER_JSON["$schema"] == SCHEMA_URL


@pytest.mark.parametrize(
    ("path", "value", "why"),
    [
        (("description",), "x" * 101, "descriptions are limited to 100 characters"),
        (("name",), "prolific-datasets-mcp", "a name needs a namespace and one slash"),
        (("packages", 0, "version"), "latest", "a package version is exact"),
        (("packages", 0, "transport"), {"type": "carrier-pigeon"}, "the transport is stdio, HTTP or SSE"),
    ],
)
def test_the_schema_refuses_what_the_registry_refuses(path: tuple[Any, ...], value: Any, why: str) -> None:
    broken = copy.deepcopy(SERVER_JSON)
    target: Any = broken
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert not validator().is_valid(broken), why


def test_server_json_names_the_package_and_its_settings() -> None:
    assert len(SERVER_JSON["description"]) <= 100
    assert SERVER_JSON["version"] == prolific_mcp.__version__
    (package,) = SERVER_JSON["packages"]
    assert package["registryType"] == "pypi"
    assert package["identifier"] == PYPROJECT["project"]["name"] == "prolific-datasets-mcp"
    assert package["version"] == prolific_mcp.__version__
    assert package["transport"] == {"type": "stdio"}
    variables = {v["name"]: v for v in package["environmentVariables"]}
    assert set(variables) == {"PROLIFIC_TOKEN", "PROLIFIC_URL", "PROLIFIC_WORKSPACE_ID", "PROLIFIC_MCP_ALLOWED_DIRS"}
    assert set(variables) <= set(ENV_VARS.values())
    token = variables["PROLIFIC_TOKEN"]
    assert (token["isSecret"], token["isRequired"]) == (True, False), "the server runs on its sandbox without it"
    assert not any(v.get("isRequired") for v in variables.values())
    assert all(not v.get("isSecret") for name, v in variables.items() if name != "PROLIFIC_TOKEN")


def test_the_readme_proves_ownership_of_the_name() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert re.findall(r"mcp-name: (\S+)", readme) == [SERVER_JSON["name"]]
    assert PYPROJECT["project"]["readme"] == "README.md", "the registry reads the marker in the PyPI description"


def test_pyproject_metadata_for_pypi() -> None:
    project = PYPROJECT["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    assert project["requires-python"] == ">=3.11"
    assert {"Homepage", "Documentation", "Issues"} <= set(project["urls"])
    assert "Typing :: Typed" in project["classifiers"]
    assert (ROOT / "prolific_mcp" / "py.typed").is_file()
    assert project["scripts"] == {"prolific-datasets-mcp": "prolific_mcp.cli:main"}
    dev = " ".join(project["optional-dependencies"]["dev"])
    for tool in ("build", "twine", "uv"):
        assert re.search(rf"\b{tool}>=", dev), tool


def test_the_bundle_manifest_runs_the_package_through_uv() -> None:
    assert MANIFEST["manifest_version"] == "0.4"
    assert MANIFEST["name"] == PYPROJECT["project"]["name"]
    assert MANIFEST["version"] == prolific_mcp.__version__
    server = MANIFEST["server"]
    assert server["type"] == "uv"
    assert (ROOT / server["entry_point"]).is_file()
    config = server["mcp_config"]
    assert [config["command"], *config["args"]] == ["uv", "run", "--directory", "${__dirname}", "prolific-datasets-mcp"]
    assert set(config["env"]) <= set(ENV_VARS.values())
    used = set(re.findall(r"\$\{user_config\.([a-z_]+)\}", json.dumps(config)))
    assert used == set(MANIFEST["user_config"])
    assert {t["name"] for t in MANIFEST["tools"]} == TOOL_NAMES
    assert MANIFEST["compatibility"]["runtimes"]["python"] == PYPROJECT["project"]["requires-python"]


def test_the_bundle_asks_for_the_token_as_a_secret_and_the_folder_as_a_directory() -> None:
    user_config = MANIFEST["user_config"]
    token = user_config["prolific_token"]
    assert (token["type"], token["sensitive"], token["required"], token["default"]) == ("string", True, False, "")
    folder = user_config["allowed_directory"]
    assert (folder["type"], folder["required"]) == ("directory", True)
    env = MANIFEST["server"]["mcp_config"]["env"]
    assert env["PROLIFIC_TOKEN"] == "${user_config.prolific_token}"
    assert env["PROLIFIC_MCP_ALLOWED_DIRS"] == "${user_config.allowed_directory}"
