"""Addresses, checked in one place: what counts as loopback, a URL's origin, and the API base-URL rule.

Loopback means a literal loopback IP (127.0.0.0/8, ::1) or the exact name `localhost`; a name that merely ends in
`.localhost` is not trusted, because a resolver may send it anywhere (`http://api.prolific.com.localhost` with a
token must be refused as plain http to a non-loopback host).
"""

from __future__ import annotations

from ipaddress import ip_address
from urllib.parse import urlsplit

__all__ = ["base_url_problem", "is_loopback_host", "is_loopback_url", "origin_of"]


def is_loopback_host(host: str | None) -> bool:
    """True for the name `localhost` and for loopback IP literals (127.0.0.0/8, ::1), brackets allowed."""
    if not host:
        return False
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ip_address(name).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str) -> bool:
    """True when the URL's host is loopback (see `is_loopback_host`)."""
    try:
        return is_loopback_host(urlsplit(url).hostname)
    except ValueError:
        return False


def origin_of(url: str) -> str:
    """scheme://host[:port] of a URL, lower-cased, default ports dropped."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is None or (scheme, port) in (("https", 443), ("http", 80)):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def base_url_problem(url: str, *, sandbox: bool = False) -> str | None:
    """What is wrong with an API base URL (None when it is fine): an http(s) origin without user name, password,
    query or fragment; https unless the host is loopback; loopback when `sandbox`."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        return "must be a valid URL such as https://api.prolific.com"
    if parts.scheme not in ("https", "http") or not host:
        return "must be an absolute https URL such as https://api.prolific.com"
    if parts.username or parts.password:
        return "must not contain a user name or password"
    if parts.query or parts.fragment:
        return "must not carry a query or fragment: use e.g. https://api.prolific.com"
    loopback = is_loopback_host(host)
    if sandbox and not loopback:
        return "sandbox mode needs a loopback API URL"
    if parts.scheme != "https" and not loopback:
        return "must use https (plain http is allowed only for a loopback address such as 127.0.0.1)"
    return None
