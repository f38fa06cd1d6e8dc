"""The one loopback rule: literal loopback IPs and the exact name `localhost`, nothing that merely ends in it."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from prolific_mcp.api.client import ProlificClient
from prolific_mcp.net import base_url_problem, is_loopback_url
from prolific_mcp.settings import ConfigurationError, load_settings

TOKEN = "tok-net-test-0123456789"


@pytest.mark.parametrize("url", ["http://api.prolific.com.localhost", "http://x.localhost:8080", "http://localhost."])
def test_a_name_ending_in_localhost_is_not_loopback(url: str) -> None:
    assert not is_loopback_url(url)
    assert base_url_problem(url) is not None
    with pytest.raises(ConfigurationError, match="PROLIFIC_URL"):
        load_settings({"PROLIFIC_URL": url, "PROLIFIC_TOKEN": TOKEN})
    with pytest.raises(ValueError, match="https"):
        ProlificClient(url, SecretStr(TOKEN))


def test_loopback_literals_and_localhost_may_use_plain_http() -> None:
    for url in ("http://127.0.0.1:8799", "http://127.8.9.1", "http://[::1]:9", "http://localhost:1"):
        assert is_loopback_url(url) and base_url_problem(url) is None
    assert base_url_problem("https://api.prolific.com", sandbox=True) == "sandbox mode needs a loopback API URL"
