"""Property tests (hypothesis; bounded profile in CI, see tests/conftest.py): the path guard, the redaction
function and the summary builder, for inputs nobody thought of (matrix F2, O2, O3, K1, K2)."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from prolific_mcp.operations.render import ImportOutcome, import_summary
from prolific_mcp.redaction import REDACTED, redact, redact_url, register_secret
from prolific_mcp.text import one_line
from prolific_mcp.uploads.files import FileAccessError, open_regular_file, resolve_path
from prolific_mcp.uploads.groups import ErrorItem, group_errors
from prolific_mcp.uploads.rejections import MAX_TEXT

# --- the path guard ------------------------------------------------------------------------------------------------


class Tree:
    """Two allowed folders among hostile neighbours: links out, a sibling sharing a prefix, a link loop."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "proj"
        self.other = base / "other-root"
        for folder in (self.root / "sub", self.other, base / "proj-evil", base / "outside"):
            folder.mkdir(parents=True)
        for path in (
            self.root / "a.jsonl",
            self.root / "sub" / "b.csv",
            self.root / ".hidden.jsonl",
            self.other / "d.jsonl",
            base / "proj-evil" / "c.jsonl",
            base / "outside" / "secret.jsonl",
        ):
            path.write_text('{"a": 1}\n')
        (self.root / "link_out").symlink_to(base / "outside" / "secret.jsonl")
        (self.root / "dirlink").symlink_to(base / "outside", target_is_directory=True)
        (self.root / "evil_link").symlink_to(base / "proj-evil", target_is_directory=True)
        (self.root / "inlink").symlink_to(self.root / "a.jsonl")
        (self.root / "to_other").symlink_to(self.other, target_is_directory=True)
        (self.root / "loop").symlink_to(self.root / "loop")
        (self.root / "up").symlink_to("..", target_is_directory=True)
        self.allowed = [self.root, self.other]
        self.real_roots = [Path(os.path.realpath(r)) for r in self.allowed]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return Tree(tmp_path_factory.mktemp("guard"))


SEGMENTS = [
    "..",
    ".",
    "",
    "proj",
    "proj-evil",
    "other-root",
    "outside",
    "a.jsonl",
    "sub",
    "b.csv",
    "c.jsonl",
    "d.jsonl",
    "secret.jsonl",
    ".hidden.jsonl",
    "link_out",
    "dirlink",
    "evil_link",
    "inlink",
    "to_other",
    "loop",
    "up",
    "~",
    "a.jsonl\\..\\..",
    "%2e%2e",
]


@st.composite
def hostile_paths(draw: st.DrawFn, base: str) -> str:
    parts = draw(st.lists(st.one_of(st.sampled_from(SEGMENTS), st.text(max_size=8)), min_size=1, max_size=7))
    separator = draw(st.sampled_from(["/", "\\", "//"]))
    start = draw(st.sampled_from(["", "/", base + "/", base + "/proj/", "~/", "./", "../"]))
    return start + separator.join(parts)


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


@given(data=st.data())
def test_an_accepted_path_always_resolves_inside_an_allowed_folder(tree: Tree, data: st.DataObject) -> None:
    """F2–F4: whatever the path string, the guard either refuses it (FileAccessError, nothing else) or returns a
    fully resolved path inside an allowed folder; what it opens is inside too."""
    raw = data.draw(st.one_of(hostile_paths(str(tree.base)), st.text(max_size=40)), label="path")
    try:
        resolved = resolve_path(raw, tree.allowed)
    except FileAccessError:
        return  # refused, with a message (any other exception fails the test)
    assert resolved.is_absolute()
    assert resolved == Path(os.path.realpath(resolved)), "an accepted path is fully resolved"
    assert _inside(resolved, tree.real_roots), f"{raw!r} resolved to {resolved}, outside the allowed folders"
    try:
        opened = open_regular_file(resolved)
    except FileAccessError:
        return
    with opened:
        assert _inside(Path(os.readlink(f"/proc/self/fd/{opened.fd}")), tree.real_roots)


def test_known_hostile_paths(tree: Tree) -> None:
    """F2–F4, explicit cases next to the property: each is refused."""
    for raw in (
        "../outside/secret.jsonl",
        "link_out",
        "dirlink/secret.jsonl",
        "evil_link/c.jsonl",
        str(tree.base / "proj-evil" / "c.jsonl"),
        "up/outside/secret.jsonl",
        "loop",
        "sub/../../outside/secret.jsonl",
        "\ud800",
        "a\x00b",
        "",
    ):
        with pytest.raises(FileAccessError):
            resolve_path(raw, tree.allowed)
    assert resolve_path("to_other/d.jsonl", tree.allowed) == tree.real_roots[1] / "d.jsonl"
    assert resolve_path("inlink", tree.allowed) == tree.real_roots[0] / "a.jsonl"


# --- redaction -------------------------------------------------------------------------------------------------------

HEX = "0123456789abcdef"
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


@given(
    token=st.text(alphabet=HEX, min_size=12, max_size=40),
    before=st.text(max_size=60),
    after=st.text(max_size=60),
    times=st.integers(min_value=1, max_value=3),
)
def test_a_registered_token_never_survives_redaction(token: str, before: str, after: str, times: int) -> None:
    """K1: the token, wherever it sits in any text (and as often as it appears), is gone after `redact`."""
    secret = f"tok-SENTINEL-{token}"
    register_secret(secret)
    text = before + (secret + after) * times
    cleaned = redact(text)
    assert secret not in cleaned
    assert REDACTED in cleaned


@st.composite
def credential_params(draw: st.DrawFn) -> tuple[str, str]:
    name = draw(st.sampled_from(["X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token"]))
    name = "".join(c.upper() if draw(st.booleans()) else c.lower() for c in name)
    separator = draw(st.sampled_from(["=", "%3D", "%3d"]))
    if "ignature" in name.lower():
        value = draw(st.text(alphabet=HEX, min_size=16, max_size=64))
    elif "redential" in name.lower():
        value = "ASIA" + draw(st.text(alphabet=HEX.upper(), min_size=12, max_size=16)) + "%2F20260101%2Fus-east-1%2Fs3"
    else:
        value = draw(st.text(alphabet=B64, min_size=16, max_size=80))
    return name + separator, value


@given(
    param=credential_params(),
    before=st.text(max_size=60),
    after=st.text(max_size=60),
    end=st.sampled_from(["", "&", " ", "'", '"', "#", ">", "\n", "&X-Amz-Date=20260101T000000Z"]),
)
def test_presigned_credentials_never_survive_redaction(
    param: tuple[str, str], before: str, after: str, end: str
) -> None:
    """K2: a signature, credential or session token in a URL, inside any text, is gone after `redact`."""
    prefix, value = param
    assume(value not in before and value not in after)
    text = f"{before}https://bucket.s3.amazonaws.com/k.jsonl?{prefix}{value}{end}{after}"
    cleaned = redact(text)
    assert value not in cleaned
    bare = f"{before}{prefix}{value}{end}{after}"  # glued to other text, without a URL around it
    assert value not in redact(bare)


@given(param=credential_params(), path=st.text(alphabet="abcdefghij/._-", max_size=30))
def test_redact_url_drops_every_credential(param: tuple[str, str], path: str) -> None:
    """K2: the URL form used in messages keeps the host and path, never a credential or userinfo."""
    prefix, value = param
    url = f"https://user:pw@bucket.s3.amazonaws.com/{path}?a=1&{prefix}{value}&b=2"
    shown = redact_url(url)
    assert value not in shown
    assert "user:pw" not in shown


# --- the summary builder ---------------------------------------------------------------------------------------------

NASTY = st.sampled_from(["\x1b[31m", "\u202e", "\u200b", "\r", "\x00", "\ufeff", "\u2028", "\x7f", "\x85", "\t", "\n"])
UNTRUSTED = st.lists(st.one_of(st.text(max_size=30), NASTY), max_size=12).map("".join)


def _itemised(errors: list[ErrorItem]) -> int:
    seen: set[int] = set()
    count = 0
    for item in errors:
        if item.record_index is not None:
            if item.record_index in seen:
                continue
            seen.add(item.record_index)
        count += 1
    return count


error_items = st.builds(
    ErrorItem,
    record_index=st.one_of(st.none(), st.integers(min_value=0, max_value=10**7)),
    field=st.one_of(st.none(), st.just("_raw"), UNTRUSTED),
    reason=st.one_of(st.none(), UNTRUSTED, st.text(min_size=500, max_size=3000)),
)


@given(
    errors=st.lists(error_items, max_size=300),
    unlisted=st.integers(min_value=0, max_value=10**6),
    status=st.one_of(st.sampled_from(["complete", "partial", "failed", "pending_schema", "processing"]), UNTRUSTED),
    filename=UNTRUSTED,
    reason=st.one_of(st.none(), UNTRUSTED),
    excerpt=st.one_of(st.none(), UNTRUSTED),
    import_id=st.one_of(st.none(), UNTRUSTED),
    rejected_file=st.one_of(st.none(), UNTRUSTED),
    schema=st.one_of(st.none(), st.dictionaries(UNTRUSTED, st.fixed_dictionaries({"type": UNTRUSTED}), max_size=5)),
)
def test_any_error_list_gives_a_bounded_clean_summary(
    errors: list[ErrorItem],
    unlisted: int,
    status: str,
    filename: str,
    reason: str | None,
    excerpt: str | None,
    import_id: str | None,
    rejected_file: str | None,
    schema: dict[str, object] | None,
) -> None:
    """O2, O3: group counts add up to rejected_count, groups and record numbers are bounded, and the text is at
    most 2,000 characters with no control or invisible character but the newlines we write."""
    rejected = _itemised(errors) + unlisted
    groups = group_errors(errors, rejected)
    assert sum(g.count for g in groups) == rejected
    assert len(groups) <= 50
    assert all(len(g.record_indexes) <= 20 for g in groups)
    if excerpt is not None:
        for group in groups[:3]:
            group.excerpt = one_line(excerpt)
    text = import_summary(
        ImportOutcome(
            dataset_id="0192a3b5-e8f9-7a0b-1c2d-3e4f5a6b7c8d",
            import_id=import_id,
            filename=filename,
            status=status,
            accepted=1000,
            rejected=rejected,
            duplicates=3,
            record_count=rejected + 1000,
            total_datapoints=5000,
            reason=reason,
            groups=groups,
            rejected_file=rejected_file,
            rejected_written=min(rejected, 1000),
            suggested_schema=schema,
        )
    )
    assert len(text) <= MAX_TEXT
    hidden = [ch for ch in text if ch != "\n" and unicodedata.category(ch) in ("Cc", "Cf", "Cs")]
    assert not hidden, f"invisible characters reached the summary: {hidden!r}"


def test_a_hundred_thousand_errors_and_a_megabyte_reason() -> None:
    """O3: the extreme case of the property, explicitly."""
    errors = [ErrorItem(i, f"field{i % 70}", f"reason {i % 90}") for i in range(100_000)]
    groups = group_errors(errors, 250_000)
    assert sum(g.count for g in groups) == 250_000
    text = import_summary(
        ImportOutcome(
            dataset_id="d1",
            import_id="i1",
            filename="big.jsonl",
            status="failed",
            rejected=250_000,
            reason="x" * 1_000_000,
            groups=groups,
        )
    )
    assert len(text) <= MAX_TEXT
    assert "i1" in text and "d1" in text
