from __future__ import annotations

import logging

import pytest

from prolific_mcp.ids import InvalidIdError, check_id, path_segment
from prolific_mcp.redaction import REDACTED, install_log_redaction, redact, redact_url, register_secret

SIG = "f00dbabe" * 8
URL = (
    "https://bucket.s3.amazonaws.com/key/data.jsonl?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    f"&X-Amz-Credential=AKIAEXAMPLE%2F20261123%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261123T000000Z"
    f"&X-Amz-Expires=900&X-Amz-SignedHeaders=content-type%3Bhost&X-Amz-Security-Token=IQoJb3JpZ2lu&X-Amz-Signature={SIG}"
)


def test_redact_url_hides_signature_credential_and_session_token() -> None:
    shown = redact_url(URL)
    assert SIG not in shown
    assert "AKIAEXAMPLE" not in shown
    assert "IQoJb3JpZ2lu" not in shown
    assert "X-Amz-Expires=900" in shown
    assert shown.startswith("https://bucket.s3.amazonaws.com/key/data.jsonl?")
    assert "user" not in redact_url("https://user:pw@host.example/x")


def test_redact_free_text_with_urls_headers_and_registered_secrets() -> None:
    register_secret("tok-SENTINEL-redaction-42")
    text = f"PUT {URL} failed; Authorization: Token tok-SENTINEL-redaction-42 and again tok-SENTINEL-redaction-42"
    out = redact(text)
    assert SIG not in out
    assert "tok-SENTINEL-redaction-42" not in out
    assert out.count(REDACTED) >= 3
    assert redact("X-Amz-Signature%3Dabcdef") == f"X-Amz-Signature%3D{REDACTED}"
    assert redact("an ordinary sentence") == "an ordinary sentence"


def test_short_secrets_are_not_registered() -> None:
    register_secret("abc")
    assert redact("abc abc") == "abc abc"


def test_the_log_filter_redacts_httpx_style_records(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction()
    install_log_redaction()  # idempotent
    logger = logging.getLogger("httpx2")
    assert len([f for f in logger.filters if type(f).__name__ == "RedactingFilter"]) == 1
    with caplog.at_level(logging.DEBUG, logger="httpx2"):
        logger.info('HTTP Request: %s %s "%s"', "PUT", URL, "HTTP/1.1 403 Forbidden")
        try:
            raise RuntimeError(f"boom {URL}")
        except RuntimeError:
            logger.exception("failed")
    assert SIG not in caplog.text
    assert "X-Amz-Signature=REDACTED" in caplog.text


@pytest.mark.parametrize("good", ["0192a3b5-e8f9-7a0b-1c2d-000000000000", "6278acb09062db3b35bcbeb0", "a_b-C9"])
def test_valid_ids(good: str) -> None:
    assert check_id(good) == good


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "a?b", "a#b", "a%2Fb", "x" * 65, "a b", "é", None, 5])
def test_invalid_ids_are_refused_with_a_next_step(bad: object) -> None:
    with pytest.raises(InvalidIdError, match="list_datasets"):
        check_id(bad, "dataset_id")


def test_path_segment_encodes_separators() -> None:
    assert path_segment("a/../b?.csv") == "a%2F..%2Fb%3F.csv"


def test_every_log_line_is_redacted_whichever_logger_wrote_it(capsys: pytest.CaptureFixture[str]) -> None:
    """The stderr handler itself redacts, so a line from the SDK's own loggers (it logs failed tool calls with
    their arguments) or any library loses the token and presigned signatures too."""
    from prolific_mcp.logs import configure_logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    register_secret("tok-SENTINEL-logs-77")
    try:
        configure_logging()
        logging.getLogger("mcp.server.some.module").info("tool failed: token=%s url=%s", "tok-SENTINEL-logs-77", URL)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    err = capsys.readouterr().err
    assert "tool failed" in err and " INFO " in err
    assert "tok-SENTINEL-logs-77" not in err and SIG not in err
