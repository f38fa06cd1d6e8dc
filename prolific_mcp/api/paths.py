"""Where things are in the Prolific API: the endpoint paths, a dataset's path, a filename made safe to send, the API
origin, and the next-page link of a paged answer. Pure functions, no I/O."""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Mapping
from typing import Any, Final

import httpx2

from prolific_mcp.api.errors import InvalidFilenameError
from prolific_mcp.ids import path_segment
from prolific_mcp.net import base_url_problem
from prolific_mcp.redaction import redact_url

DATASETS: Final = "/api/v1/data-collection/datasets"
BATCHES: Final = "/api/v1/data-collection/batches"
WORKSPACES: Final = "/api/v1/workspaces/"
USERS_ME: Final = "/api/v1/users/me/"
PAGE_SIZE: Final = 100
MAX_PAGES: Final = 50

_log = logging.getLogger("prolific_mcp.api")


def dataset_path(dataset_id: str, *under: str) -> str:
    """The API path of a dataset, or of what lies under it; each part is one path segment."""
    return "/".join([DATASETS, *(path_segment(part) for part in (dataset_id, *under))])


def safe_filename(name: str) -> str:
    """The basename of `name`, checked to be sendable as one path segment; raises InvalidFilenameError."""
    if not isinstance(name, str):
        raise InvalidFilenameError("the filename must be a string, e.g. 'reviews.jsonl'")
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    if base in ("", ".", ".."):
        raise InvalidFilenameError(
            f"{name[:80]!r} has no usable file name: give the file's name with its extension, e.g. 'reviews.jsonl'"
        )
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in base):
        raise InvalidFilenameError(
            "the filename contains control or invisible characters (or NUL): rename the file to plain characters"
        )
    if len(base.encode("utf-8", errors="surrogatepass")) > 255:
        raise InvalidFilenameError("the filename is longer than 255 bytes: rename the file to a shorter name")
    try:
        base.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidFilenameError("the filename is not valid Unicode: rename the file") from None
    return base


def origin(url: httpx2.URL) -> tuple[str, str, int]:
    scheme = url.scheme.lower()
    return scheme, url.host.lower(), url.port or (443 if scheme == "https" else 80)


def check_base_url(base_url: str, *, sandbox: bool) -> httpx2.URL:
    problem = base_url_problem(base_url, sandbox=sandbox)
    if problem is not None:
        raise ValueError(f"PROLIFIC_URL {redact_url(base_url)!r} {problem}")
    try:
        return httpx2.URL(base_url)
    except httpx2.InvalidURL:
        raise ValueError(f"PROLIFIC_URL {redact_url(base_url)!r} is not a valid URL") from None


def next_page(
    data: Mapping[str, Any], page_url: httpx2.URL, api_origin: tuple[str, str, int], base_path: str
) -> tuple[bool, tuple[str, dict[str, str]] | None]:
    """Whether the answer links a next page, and where: `_links.next.href` (Prolific's shape) or the older
    `links.next` string. The place is (path, query) on the API origin, or None when the link cannot be used: a
    link to another origin is never followed (the token goes to the API origin only), and the caller steps
    `offset` instead, as for a link that only says there is more."""
    href: object = None
    for key in ("_links", "links"):
        links = data.get(key)
        if isinstance(links, Mapping):
            nxt = links.get("next")
            href = nxt.get("href") if isinstance(nxt, Mapping) else nxt
            if href:
                break
    if not href:
        return False, None
    if not isinstance(href, str):
        return True, None
    try:
        url = page_url.join(href.strip())
    except httpx2.InvalidURL:
        return True, None
    if origin(url) != api_origin:
        _log.warning("not following a next-page link to another origin: %s", redact_url(str(url)))
        return True, None
    path = url.path
    if base_path and path.startswith(base_path + "/"):
        path = path[len(base_path) :]
    return True, (path, dict(url.params.multi_items()))
