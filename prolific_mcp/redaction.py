"""Keep secrets out of text: the API token and presigned-URL signatures.

Every message we build from data we did not write (URLs, response bodies, exception text) goes through
`redact` before it reaches an exception, a log line or a tool result. `install_log_redaction` adds the same
filter to the loggers of httpx2 and httpcore2, which log full request URLs at INFO and DEBUG.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "REDACTED"

# Query parameters of an S3 presigned URL that grant access (SigV4 and the older SigV2 shape).
SENSITIVE_QUERY_PARAMS = frozenset(
    {
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "signature",
        "awsaccesskeyid",
    }
)

# No word boundary before the name: a parameter glued to other text ("0X-Amz-Credential=...") is still a secret.
_QUERY_SECRET = re.compile(
    r"(?i)(X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature|AWSAccessKeyId)"
    r"(=|%3D)([^&\s\"'<>#]+)"
)
_AUTH_HEADER = re.compile(r"(?i)\b(Authorization\s*[:=]\s*['\"]?)(Token|Bearer)\s+[^\s'\",}]+")

_lock = threading.Lock()
_known_secrets: set[str] = set()

LOGGERS_TO_FILTER = (
    "httpx2",
    "httpcore2",
    "httpcore2.connection",
    "httpcore2.http11",
    "httpcore2.http2",
    "httpcore2.proxy",
    "httpcore2.socks",
    "prolific_mcp",
    "uvicorn.access",
    "uvicorn.error",
)


def register_secret(secret: str | None) -> None:
    """Remember a secret (the API token) so that `redact` removes it wherever it appears.

    Secrets shorter than 6 characters are not registered: replacing them would mangle ordinary text, and a
    token that short is not a real Prolific token.
    """
    if secret and len(secret) >= 6:
        with _lock:
            _known_secrets.add(secret)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Return `text` with registered and given secrets, presigned signatures and auth headers replaced."""
    if not text:
        return text
    with _lock:
        known = set(_known_secrets)
    known.update(s for s in secrets if s and len(s) >= 6)
    for secret in sorted(known, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    text = _QUERY_SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return _AUTH_HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)} {REDACTED}", text)


def redact_url(url: str) -> str:
    """Show a URL without its credentials: signature parameters replaced, userinfo dropped."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        query = urlencode([(k, REDACTED if k.lower() in SENSITIVE_QUERY_PARAMS else v) for k, v in pairs], safe="/")
    else:
        query = ""
    return redact(urlunsplit((parts.scheme, netloc, parts.path, query, "")))


class RedactingFilter(logging.Filter):
    """A logging filter that renders each record's message once and redacts it in place."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not break logging
            message = str(record.msg)
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(exc_text)
            record.exc_info = None
        return True


_FILTER = RedactingFilter()


def install_log_redaction(logger_names: Iterable[str] = LOGGERS_TO_FILTER) -> None:
    """Attach the redacting filter to the loggers that may see tokens or presigned URLs (idempotent)."""
    for name in logger_names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
