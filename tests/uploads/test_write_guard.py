"""The rejected-records file is written as tightly as files are read (issue: writes outside the allowed folders).

Real folders, links and a real size limit in a child process: the folder is opened once without following a
link, containment is judged on that descriptor, the file is created relative to it with O_EXCL|O_NOFOLLOW, a
taken or dangling name moves on, the input's permission bits are kept, and a failed write leaves no partial file.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import BinaryIO

import pytest

from prolific_mcp.uploads import writes as writes_module
from prolific_mcp.uploads.writes import WriteFailure, rejected_names, write_beside

ROOT = Path(__file__).parents[2]


@pytest.fixture(params=["kernel path", "parent walk"])
def containment(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Containment judged by the kernel's path for the descriptor, or (where the system has none) by walking up
    from it through `..`: both are exercised here."""
    if request.param == "parent walk":
        monkeypatch.setattr(writes_module, "descriptor_path", lambda fd: None)
    return str(request.param)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    proj = tmp_path / "proj"
    (proj / "sub").mkdir(parents=True)
    return proj


def _lines(sink: BinaryIO) -> int:
    sink.write(b'{"a": 1}\n{"a": 2}\n')
    return 2


def test_the_file_lands_beside_the_input_with_its_permission_bits(root: Path, containment: str) -> None:
    original = root / "sub" / "data.jsonl"
    original.write_text("{}\n")
    for bits in (0o600, 0o640):
        written = write_beside(original, [root], _lines, mode=bits)
        assert written is not None
        path, count = written
        assert count == 2
        assert path.parent == original.parent
        assert path.read_bytes() == b'{"a": 1}\n{"a": 2}\n'
        assert stat.S_IMODE(path.stat().st_mode) == bits
    assert sorted(p.name for p in original.parent.iterdir()) == [
        "data.jsonl",
        "data.rejected.1.jsonl",
        "data.rejected.jsonl",
    ]


def test_a_dangling_link_or_a_taken_name_moves_on_to_the_next_name(root: Path, tmp_path: Path) -> None:
    original = root / "data.csv"
    original.write_text("a\n1\n")
    target = tmp_path / "elsewhere.csv"  # does not exist: a dangling link would create it if followed
    (root / "data.rejected.csv").symlink_to(target)
    (root / "data.rejected.1.csv").write_text("taken\n")
    written = write_beside(original, [root], _lines)
    assert written is not None
    assert written[0] == root / "data.rejected.2.csv"
    assert not target.exists(), "the dangling link was not followed"
    assert (root / "data.rejected.1.csv").read_text() == "taken\n"
    assert list(rejected_names("x.jsonl"))[:3] == ["x.rejected.jsonl", "x.rejected.1.jsonl", "x.rejected.2.jsonl"]


def test_a_folder_swapped_for_a_link_sends_nothing_outside(root: Path, tmp_path: Path, containment: str) -> None:
    outside = tmp_path / "outside"
    (outside / "deeper").mkdir(parents=True)
    # The input's own folder replaced by a link: refused (O_NOFOLLOW on the folder).
    original = root / "sub" / "data.jsonl"
    original.write_text("{}\n")
    (root / "sub").rename(root / "sub.old")
    (root / "sub").symlink_to(outside, target_is_directory=True)
    with pytest.raises(WriteFailure, match="replaced"):
        write_beside(original, [root], _lines)
    # A folder higher up replaced by a link: the folder opens outside, and the descriptor check refuses it.
    deeper = root / "sub" / "deeper" / "data.jsonl"
    with pytest.raises(WriteFailure, match="no longer lies inside the allowed directories"):
        write_beside(deeper, [root], _lines)
    assert sorted(p.name for p in outside.rglob("*")) == ["deeper"], "nothing was written outside"


def test_a_swap_after_the_folder_was_opened_still_writes_inside(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    original = root / "sub" / "data.jsonl"
    original.write_text("{}\n")

    def swap_then_name(base: str) -> list[str]:
        # Runs after the folder was opened and checked: the swap comes too late to redirect the write.
        (root / "sub").rename(root / "moved")
        (root / "sub").symlink_to(outside, target_is_directory=True)
        return list(rejected_names(base))

    written = write_beside(original, [root], _lines, names=lambda base: iter(swap_then_name(base)))
    assert written is not None
    assert list(outside.iterdir()) == []
    assert (root / "moved" / "data.rejected.jsonl").read_bytes().count(b"\n") == 2


def test_a_full_disk_leaves_no_partial_file_and_says_why(root: Path) -> None:
    original = root / "data.jsonl"
    original.write_text("{}\n")

    def fills_the_disk(sink: BinaryIO) -> int:
        sink.write(b"x" * 100_000)
        sink.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(WriteFailure) as caught:
        write_beside(original, [root], fills_the_disk)
    assert caught.value.reason.startswith("could not write the rejected-records file: the disk is full")
    assert sorted(p.name for p in root.iterdir()) == ["data.jsonl", "sub"]


def test_a_real_file_size_limit_leaves_no_partial_file(root: Path) -> None:
    """A child process with RLIMIT_FSIZE: the kernel refuses the write (EFBIG) part-way."""
    original = root / "data.jsonl"
    original.write_text("{}\n")
    script = textwrap.dedent(
        f"""
        import resource, signal
        from pathlib import Path
        from prolific_mcp.uploads.writes import WriteFailure, write_beside
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
        def big(sink):
            for _ in range(64):
                sink.write(b"y" * 16384)
            return 0
        try:
            write_beside(Path({str(original)!r}), [Path({str(root)!r})], big)
        except WriteFailure as exc:
            print(exc.reason)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert "could not write the rejected-records file: the file would be larger than the system allows" in out.stdout
    assert sorted(p.name for p in root.iterdir()) == ["data.jsonl", "sub"]


def test_a_file_another_process_wrote_first_is_removed(root: Path) -> None:
    original = root / "data.jsonl"
    original.write_text("{}\n")
    assert write_beside(original, [root], _lines, keep=lambda path: False) is None
    assert sorted(p.name for p in root.iterdir()) == ["data.jsonl", "sub"]
