"""The boundary stays where it was set: allowed directories resolved once, paths echoed capped, inline names checked.

Real folders and links: a folder replaced by a link after start-up (or a link to it re-pointed) does not move
what may be read; a 10,000-character path is never repeated whole; a NUL in an inline file name is named.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from prolific_mcp.settings import load_settings
from prolific_mcp.uploads.files import (
    FileAccessError,
    check_inline_filename,
    open_inline,
    open_regular_file,
    resolve_path,
)

OUTSIDE = "outside the allowed directories"


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    for folder in (data, elsewhere):
        folder.mkdir()
        (folder / "x.jsonl").write_text('{"a": 1}\n')
    return data, elsewhere


def test_an_allowed_folder_replaced_by_a_link_after_start_does_not_move_the_boundary(tmp_path: Path) -> None:
    data, elsewhere = _folders(tmp_path)
    settings = load_settings({"PROLIFIC_MCP_ALLOWED_DIRS": str(data)})
    allowed = settings.effective_allowed_dirs()
    assert allowed == [data]
    assert resolve_path("x.jsonl", allowed) == data / "x.jsonl"
    data.rename(tmp_path / "data.old")
    data.symlink_to(elsewhere, target_is_directory=True)
    assert settings.effective_allowed_dirs() == [data], "the boundary is the folder resolved at start"
    for raw in ("x.jsonl", str(data / "x.jsonl")):
        with pytest.raises(FileAccessError, match=OUTSIDE):
            resolve_path(raw, settings.effective_allowed_dirs())


def test_a_link_named_as_allowed_folder_is_followed_once_at_start(tmp_path: Path) -> None:
    data, elsewhere = _folders(tmp_path)
    link = tmp_path / "project"
    link.symlink_to(data, target_is_directory=True)
    settings = load_settings({"PROLIFIC_MCP_ALLOWED_DIRS": str(link)})
    assert settings.effective_allowed_dirs() == [data]
    link.unlink()
    link.symlink_to(elsewhere, target_is_directory=True)  # re-pointed after start
    with pytest.raises(FileAccessError, match=OUTSIDE):
        resolve_path(str(link / "x.jsonl"), settings.effective_allowed_dirs())
    assert resolve_path(str(data / "x.jsonl"), settings.effective_allowed_dirs()) == data / "x.jsonl"


def test_a_hard_link_inside_to_a_file_outside_is_read_as_documented(tmp_path: Path) -> None:
    """The known limit (docs/reliability.md, Known limits): the boundary is about names; a hard link made by
    someone who can already read the file and write in the allowed folder is that folder's file."""
    data, elsewhere = _folders(tmp_path)
    os.link(elsewhere / "x.jsonl", data / "linked.jsonl")
    resolved = resolve_path("linked.jsonl", [data])
    assert resolved == data / "linked.jsonl"
    with open_regular_file(resolved) as opened:
        assert os.fstat(opened.fd).st_nlink == 2
        assert os.pread(opened.fd, 100, 0) == b'{"a": 1}\n'


def test_a_long_path_is_echoed_capped(tmp_path: Path) -> None:
    data, _ = _folders(tmp_path)
    long_name = "d" * 200 + "/"
    raw = str(data / (long_name * 45)) + "end.jsonl"  # about 10,000 characters
    assert len(raw) > 9000
    for candidate in (raw, "/etc/" + "e" * 10_000):
        with pytest.raises(FileAccessError) as caught:
            resolve_path(candidate, [data])
        text = str(caught.value)
        assert len(text) < 700, len(text)
        assert "…" in text


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("rec\x00ords.jsonl", "NUL character"),
        ("", "empty"),
        ("a\nb.jsonl", "control characters"),
        ("..", "names no file"),
        ("\ud800.jsonl", "not valid text"),
        ("x" * 300 + ".jsonl", "over 200"),
    ],
)
def test_bad_inline_filenames_are_named(name: str, needle: str, tmp_path: Path) -> None:
    with pytest.raises(FileAccessError, match=needle):
        open_inline('{"a": 1}\n', name, tmp_path / "inline")
    assert not (tmp_path / "inline").exists(), "nothing was written for a refused name"


def test_inline_content_is_stored_privately_and_leaves_nothing_behind(tmp_path: Path) -> None:
    assert check_inline_filename("dir/sub\\records.jsonl") == "records.jsonl"
    folder = tmp_path / "state" / "inline"
    with open_inline('{"a": 1}\n', "records.jsonl", folder) as opened:
        assert os.pread(opened.fd, 100, 0) == b'{"a": 1}\n'
        assert stat.S_IMODE(os.fstat(opened.fd).st_mode) == 0o600
    assert list(folder.iterdir()) == []
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    with pytest.raises(FileAccessError, match="not valid text"):
        open_inline("\ud800", "records.jsonl", folder)
    with pytest.raises(FileAccessError, match="1 MiB"):
        open_inline("x" * (1024 * 1024 + 1), "records.jsonl", folder)
