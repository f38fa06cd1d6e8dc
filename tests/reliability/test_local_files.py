"""Local file access through the tools (matrix F1–F8, M3): what is refused is refused before any request.

The unit tests in tests/uploads/test_files.py cover the guard function by function; these go through the MCP
server and the sandbox and check, strictly, that a refused call sent nothing anywhere.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import stat
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from prolific_mcp.operations import deps as deps_module
from prolific_mcp.sandbox import Sandbox
from prolific_mcp.server.app import build_server
from prolific_mcp.settings import Settings
from prolific_mcp.uploads import files as files_module
from prolific_mcp.uploads import writes as writes_module
from prolific_mcp.uploads.files import FileAccessError, open_regular_file, resolve_path
from tests.server.conftest import SCHEMA_FIELDS, call, make_settings, ok, records, text_of, write_jsonl

pytestmark = pytest.mark.anyio

OUTSIDE = "outside the allowed directories"


async def _dataset(client: Client) -> str:
    created = await ok(client, "create_dataset", {"name": "Files", "fields": SCHEMA_FIELDS, "strict": False})
    return str((created.structured_content or {})["id"])


async def test_hostile_paths_are_refused_before_any_request(
    tmp_path: Path, data_dir: Path, sandbox: Sandbox, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """F1–F5, F8, M3: tool-poisoning payloads, traversal, links, sibling prefixes, special files, size and type."""
    home = tmp_path
    monkeypatch.setenv("HOME", str(home))  # "~" expands here, and the files it names exist
    (home / ".ssh").mkdir()
    (home / ".ssh" / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    (home / ".cursor").mkdir()
    (home / ".cursor" / "mcp.json").write_text('{"mcpServers": {}}\n')
    outside = write_jsonl(tmp_path / "outside.jsonl", records(2))
    evil = tmp_path / "data-evil"  # shares the allowed folder's name as a string prefix
    evil.mkdir()
    write_jsonl(evil / "a.jsonl", records(1))
    (data_dir / "link.jsonl").symlink_to(outside)
    (data_dir / "dirlink").symlink_to(evil, target_is_directory=True)
    (data_dir / "environ.jsonl").symlink_to("/proc/self/environ")
    (data_dir / "zero.jsonl").symlink_to("/dev/zero")
    os.mkfifo(data_dir / "pipe.jsonl")
    (data_dir / "folder.jsonl").mkdir()
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(data_dir / "sock.jsonl"))
    (data_dir / "empty.jsonl").write_bytes(b"")
    with open(data_dir / "huge.jsonl", "wb") as handle:
        handle.truncate(5 * 1024**3 + 1)  # sparse: no disk used
    (data_dir / "notes.txt").write_text("hello\n")
    write_jsonl(data_dir / "ok.jsonl", records(1))

    cases: list[tuple[dict[str, Any], str]] = [
        ({"path": "/etc/passwd"}, OUTSIDE),
        ({"path": "/etc/no-such-file-anywhere"}, OUTSIDE),  # not "no file at": existence outside is not told
        ({"path": "~/.ssh/id_rsa"}, OUTSIDE),
        ({"path": "~/.cursor/mcp.json"}, OUTSIDE),
        ({"path": "/proc/self/environ"}, OUTSIDE),
        ({"path": "../outside.jsonl"}, OUTSIDE),
        ({"path": "../../../../../../etc/passwd"}, OUTSIDE),
        ({"path": "..\\..\\outside.jsonl"}, "no file at"),  # a backslash is a plain character on POSIX
        ({"path": "link.jsonl"}, OUTSIDE),
        ({"path": "dirlink/a.jsonl"}, OUTSIDE),
        ({"path": str(evil / "a.jsonl")}, OUTSIDE),
        ({"path": "environ.jsonl"}, OUTSIDE),
        ({"path": "zero.jsonl"}, OUTSIDE),
        ({"path": "pipe.jsonl"}, "named pipe"),
        ({"path": "folder.jsonl"}, "directory"),
        ({"path": "sock.jsonl"}, "socket"),
        ({"path": "empty.jsonl"}, "empty"),
        ({"path": "huge.jsonl"}, "split it"),
        ({"path": "notes.txt"}, "not a .jsonl"),
        ({"path": "ok\x00.jsonl"}, "NUL"),
        ({"path": "\ud800.jsonl"}, "cannot be used as a file name"),
        ({"path": "   "}, "empty"),
        ({}, "either path"),
        ({"path": "ok.jsonl", "format": "xml"}, "not supported"),
        ({"content": "x" * (1024 * 1024 + 1), "filename": "big.jsonl"}, "1 MiB"),
    ]
    server = build_server(settings, sandbox_url=sandbox.url)
    try:
        with anyio.fail_after(60):
            async with Client(server) as client:
                dataset_id = await _dataset(client)
                sandbox.requests.clear()
                for args, needle in cases:
                    result = await call(client, "upload_file", {"dataset_id": dataset_id, **args})
                    assert result.is_error, args
                    assert needle in text_of(result), (args, text_of(result))
                for bad_id in ("../x", "a/b", "x?y=1", "a#b", "", "0" * 65, "é"):
                    result = await call(client, "upload_file", {"dataset_id": bad_id, "path": "ok.jsonl"})
                    assert result.is_error
                    assert "not a valid Prolific id" in text_of(result) or "dataset_id" in text_of(result)
                for args in ({"path": "../outside.jsonl"}, {"path": "pipe.jsonl"}):
                    checked = await call(client, "validate_file", {**args, "fields": SCHEMA_FIELDS})
                    assert checked.is_error
                    suggested = await call(client, "suggest_schema", args)
                    assert suggested.is_error
    finally:
        listener.close()
    assert list(sandbox.requests) == [], "a refused call must not send anything (no orphan import)"


async def test_outside_message_says_how_to_widen_the_allowlist(
    tmp_path: Path, data_dir: Path, sandbox: Sandbox
) -> None:
    """F1: the error names the allowed folders and the setting that widens them."""
    server = build_server(make_settings(tmp_path, data_dir), sandbox_url=sandbox.url)
    with anyio.fail_after(30):
        async with Client(server) as client:
            result = await call(client, "suggest_schema", {"path": "/etc/passwd"})
    assert result.is_error
    text = text_of(result)
    assert str(data_dir) in text
    assert "PROLIFIC_MCP_ALLOWED_DIRS" in text and "--allow-dir" in text


def test_devices_and_proc_files_inside_an_allowed_folder_are_refused() -> None:
    """F5: even with /dev or /proc/self allowed, a device or a procfs file (it holds our token) is never read.

    Both are refused from their metadata, before a byte is read (reading /dev/zero would never end).
    """
    with pytest.raises(FileAccessError, match="a device"):
        open_regular_file(resolve_path("/dev/zero", [Path("/dev")]))
    with pytest.raises(FileAccessError, match="empty"):
        # Allowed directories are resolved once, at start, as the settings do (/proc/self is a link).
        open_regular_file(resolve_path("environ", [Path(os.path.realpath("/proc/self"))]))


def _swap_for_link(target: Path, elsewhere: Path) -> None:
    target.unlink()
    target.symlink_to(elsewhere)


def _swap_dir_for_link(folder: Path, elsewhere: Path) -> None:
    shutil.rmtree(folder)
    folder.symlink_to(elsewhere, target_is_directory=True)


@pytest.mark.parametrize("when", ["after the check", "between stat and open"])
@pytest.mark.parametrize("what", ["file", "folder"])
async def test_a_swap_between_check_and_open_is_refused(
    tmp_path: Path, data_dir: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, when: str, what: str
) -> None:
    """F6: the checked path is swapped for a link outside the allowed folder before the file is opened."""
    secret_dir = tmp_path / "secret"
    secret_dir.mkdir()
    write_jsonl(secret_dir / "r.jsonl", records(3, start=100))
    (data_dir / "sub").mkdir()
    write_jsonl(data_dir / "sub" / "r.jsonl", records(3))

    def swap() -> None:
        if what == "file":
            _swap_for_link(data_dir / "sub" / "r.jsonl", secret_dir / "r.jsonl")
        else:
            _swap_dir_for_link(data_dir / "sub", secret_dir)

    swapped: list[bool] = []
    if when == "after the check":
        real_resolve = deps_module.resolve_path

        def resolve_then_swap(raw: str, allowed: Any) -> Path:
            resolved = real_resolve(raw, allowed)
            if not swapped:
                swapped.append(True)
                swap()
            return resolved

        monkeypatch.setattr(deps_module, "resolve_path", resolve_then_swap)
    else:
        real_open = os.open
        checked = str((data_dir / "sub" / "r.jsonl").resolve())

        def swap_then_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            if not swapped and os.fspath(path) == checked:
                swapped.append(True)
                swap()
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(files_module.os, "open", swap_then_open)

    server = build_server(make_settings(tmp_path, data_dir), sandbox_url=sandbox.url)
    with anyio.fail_after(30):
        async with Client(server) as client:
            dataset_id = await _dataset(client)
            sandbox.requests.clear()
            result = await call(client, "upload_file", {"dataset_id": dataset_id, "path": "sub/r.jsonl"})
    assert swapped == [True]
    assert result.is_error, text_of(result)
    assert "changed while it was being opened" in text_of(result) or "cannot open" in text_of(result)
    assert list(sandbox.requests) == [], "nothing may be sent for a swapped file"


async def _partial_upload(client: Client, dataset_id: str) -> dict[str, Any]:
    result = await call(client, "upload_file", {"dataset_id": dataset_id, "path": "sub/reviews.jsonl"})
    assert not result.is_error, text_of(result)
    data = dict(result.structured_content or {})
    assert (data["status"], data["rejected_count"]) == ("partial", 2), data
    data["_text"] = text_of(result)
    return data


def _reviews(data_dir: Path) -> Path:
    (data_dir / "sub").mkdir()
    path = write_jsonl(
        data_dir / "sub" / "reviews.jsonl", records(6, bad={1: {"photo": "ftp://x"}, 4: {"photo": "ftp://y"}})
    )
    path.chmod(0o600)
    return path


async def test_the_rejected_file_moves_past_a_dangling_link_and_keeps_the_inputs_bits(
    tmp_path: Path, data_dir: Path, sandbox: Sandbox
) -> None:
    """Issue B1 and W-perms through the server: a link at the name is never followed; a 0600 input gives 0600."""
    _reviews(data_dir)
    trap = tmp_path / "outside" / "planted.jsonl"
    trap.parent.mkdir()
    (data_dir / "sub" / "reviews.rejected.jsonl").symlink_to(trap)
    server = build_server(make_settings(tmp_path, data_dir), sandbox_url=sandbox.url)
    with anyio.fail_after(60):
        async with Client(server) as client:
            data = await _partial_upload(client, await _dataset(client))
    written = Path(data["rejected_file"])
    assert written == (data_dir / "sub" / "reviews.rejected.1.jsonl").resolve()
    assert data["rejected_written"] == 2
    assert not trap.exists(), "the dangling link was not followed"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600


@pytest.mark.parametrize("fault", ["folder swapped for a link", "disk full"])
async def test_a_rejected_file_that_cannot_be_written_safely_is_not_and_the_result_says_why(
    tmp_path: Path, data_dir: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    """Issue B1 and W-full through the server: the folder is swapped for a link after the upload began (nothing
    lands outside), or the disk fills mid-write (no partial file); the result says why, the records are listed."""
    _reviews(data_dir)
    outside = tmp_path / "outside"
    outside.mkdir()
    real_write_beside = writes_module.write_beside

    def faulty(original: Path, allowed: Any, write: Any, **kwargs: Any) -> Any:
        if fault == "folder swapped for a link":
            (data_dir / "sub").rename(data_dir / "moved")
            (data_dir / "sub").symlink_to(outside, target_is_directory=True)
            return real_write_beside(original, allowed, write, **kwargs)

        def fills_the_disk(sink: Any) -> Any:
            sink.write(b"x" * 4096)
            sink.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        return real_write_beside(original, allowed, fills_the_disk, **kwargs)

    monkeypatch.setattr(writes_module, "write_beside", faulty)
    server = build_server(make_settings(tmp_path, data_dir), sandbox_url=sandbox.url)
    with anyio.fail_after(60):
        async with Client(server) as client:
            data = await _partial_upload(client, await _dataset(client))
    assert data["rejected_file"] is None
    assert list(outside.iterdir()) == [], "nothing was written outside the allowed directory"
    folder = data_dir / ("moved" if fault == "folder swapped for a link" else "sub")
    assert sorted(p.name for p in folder.iterdir()) == ["reviews.jsonl"], "no partial file is left"
    reason = "replaced after the upload began" if fault == "folder swapped for a link" else "the disk is full"
    assert "could not write the rejected-records file" in data["_text"].lower() and reason in data["_text"]
