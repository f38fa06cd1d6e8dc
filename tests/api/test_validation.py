"""What is refused before any I/O: ids, filenames, base URLs, upload URLs."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from prolific_mcp.api.client import ProlificClient
from prolific_mcp.api.errors import InvalidFilenameError, UnsafeUploadUrlError
from prolific_mcp.api.paths import safe_filename
from prolific_mcp.api.s3 import check_upload_url
from prolific_mcp.ids import InvalidIdError
from prolific_mcp.net import is_loopback_host

from .conftest import SENTINEL, SIGNATURE, FakeClock, assert_exception_clean, assert_no_leak, respond, serve

DS = "0192a3b5-e8f9-7a0b-1c2d-3e4f5a6b7c8d"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("reviews.jsonl", "reviews.jsonl"),
        ("dir/sub/reviews.csv", "reviews.csv"),
        ("a/../../workspaces?x=1.jsonl", "workspaces?x=1.jsonl"),
        ("C:\\Users\\me\\data.csv", "data.csv"),
        ("100% done #1.jsonl", "100% done #1.jsonl"),
        ("données.jsonl", "données.jsonl"),
    ],
)
def test_safe_filename_takes_the_basename(name: str, expected: str) -> None:
    assert safe_filename(name) == expected


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "dir/", "a/..", "nul\x00.jsonl", "tab\t.csv", "bidi\u202e.csv", "x" * 256 + ".csv", "\ud800.csv"],
)
def test_safe_filename_refuses(name: str) -> None:
    with pytest.raises(InvalidFilenameError):
        safe_filename(name)


@pytest.mark.anyio
async def test_bad_ids_and_filenames_send_nothing(clock: FakeClock) -> None:
    async with serve(respond(200)) as server:
        async with ProlificClient(server.url, SENTINEL, sandbox=True, sleep=clock.sleep, clock=clock) as client:
            for bad in ("../workspaces", "a/b", "", "x" * 65, "a%2Fb", "id?x=1", "é"):
                with pytest.raises(InvalidIdError):
                    await client.get_dataset(bad)
            with pytest.raises(InvalidIdError):
                await client.get_import(DS, "../../x")
            with pytest.raises(InvalidIdError):
                await client.get_migration(DS, "a b")
            with pytest.raises(InvalidIdError):
                await client.list_batches("ws/../1")
            with pytest.raises(InvalidIdError):
                await client.create_dataset("n", "ws?x", None)
            for bad_name in ("..", "", "a\x00b.jsonl", "x\n.csv"):
                with pytest.raises(InvalidFilenameError):
                    await client.get_upload_url(DS, bad_name)
        assert server.connections == []


# --- the base URL ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "sandbox"),
    [
        ("http://api.prolific.com", False),
        ("ftp://api.prolific.com", False),
        ("https://user:pw@api.prolific.com", False),
        ("https://api.prolific.com/?x=1", False),
        ("https://api.prolific.com", True),
        ("not a url", False),
    ],
)
def test_base_url_refused(url: str, sandbox: bool) -> None:
    with pytest.raises(ValueError, match=r"PROLIFIC_URL|sandbox"):
        ProlificClient(url, SENTINEL, sandbox=sandbox)


def test_base_url_accepted_and_repr_hides_the_token() -> None:
    for url, sandbox in [
        ("https://api.prolific.com", False),
        ("https://api.prolific.com/", False),
        ("http://127.0.0.1:8799", True),
        ("http://localhost:8799", True),
        ("http://[::1]:8799", True),
    ]:
        client = ProlificClient(url, SecretStr(SENTINEL), sandbox=sandbox)
        assert_no_leak(repr(client), str(client))
        assert client.sandbox is sandbox


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("[::1]", True),
        ("::1", True),
        ("10.0.0.1", False),
        ("example.com", False),
        ("localhost.evil.com", False),
        ("api.prolific.com.localhost", False),
        ("localhost.", False),
    ],
)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


# --- upload URLs -------------------------------------------------------------------------------------------------

SIG = f"X-Amz-Signature={SIGNATURE}"


@pytest.mark.parametrize(
    ("url", "sandbox"),
    [
        (f"https://bucket.s3.eu-west-2.amazonaws.com/datasets/k.jsonl?{SIG}", False),
        (f"https://bucket.s3.amazonaws.com/k?{SIG}", True),
        (f"http://127.0.0.1:9000/s3/k?{SIG}", True),
        (f"http://localhost:9000/s3/k?{SIG}", True),
    ],
)
def test_upload_url_accepted(url: str, sandbox: bool) -> None:
    assert check_upload_url(url, sandbox=sandbox).host


@pytest.mark.parametrize(
    ("url", "sandbox", "why"),
    [
        (f"http://bucket.s3.amazonaws.com/k?{SIG}", False, "plain http"),
        (f"http://127.0.0.1:6379/?{SIG}", False, "plain http"),
        (f"http://169.254.169.254/latest/meta-data?{SIG}", True, "loopback host"),
        (f"https://169.254.169.254/latest/meta-data?{SIG}", False, "local or private"),
        (f"https://127.0.0.1/k?{SIG}", False, "local or private"),
        (f"https://localhost/k?{SIG}", False, "local or private"),
        (f"https://10.1.2.3/k?{SIG}", False, "local or private"),
        (f"https://[::1]/k?{SIG}", False, "local or private"),
        (f"https://user:secretpw@bucket.s3.amazonaws.com/k?{SIG}", False, "user name or password"),
        (f"https://user@bucket.s3.amazonaws.com/k?{SIG}", True, "user name or password"),
        ("file:///etc/passwd", True, "scheme"),
        (f"ftp://bucket.example/k?{SIG}", True, "scheme"),
        (f"javascript:alert(1)?{SIG}", True, "scheme"),
        (f"https:///k?{SIG}", False, "no host"),
        (f"https://bucket.s3.amazonaws.com/k k?{SIG}", False, "whitespace"),
        (f"https://bucket.s3.amazonaws.com/k\r\nX: y?{SIG}", False, "control"),
    ],
)
def test_upload_url_refused(url: str, sandbox: bool, why: str) -> None:
    with pytest.raises(UnsafeUploadUrlError, match=why) as info:
        check_upload_url(url, sandbox=sandbox)
    assert_exception_clean(info.value)
    assert "secretpw" not in str(info.value)
    assert "Nothing was uploaded" in str(info.value)
