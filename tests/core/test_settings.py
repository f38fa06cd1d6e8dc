from __future__ import annotations

import os
from pathlib import Path

import pytest

from prolific_mcp.settings import (
    ConfigurationError,
    default_state_dir,
    is_loopback_url,
    load_settings,
    origin_of,
    unsafe_default_dir_reason,
)

SENTINEL = "tok-SENTINEL-settings-0123456789"


def test_defaults_and_auto_mode_without_a_token_is_the_sandbox(tmp_path: Path) -> None:
    s = load_settings({"HOME": str(tmp_path)})
    assert s.resolved_mode == "sandbox"
    assert s.api_url == "https://api.prolific.com"
    assert (s.wait_seconds, s.max_wait_seconds, s.max_uploads, s.read_only) == (50, 900, 4, False)
    assert s.state_dir == default_state_dir({"HOME": str(tmp_path)})
    assert s.api_token is None


def test_a_token_means_prolific_and_is_never_shown(tmp_path: Path) -> None:
    s = load_settings({"PROLIFIC_TOKEN": SENTINEL, "HOME": str(tmp_path)})
    assert s.resolved_mode == "prolific"
    assert s.api_token == SENTINEL
    assert SENTINEL not in repr(s)
    assert SENTINEL not in str(s.model_dump())


def test_the_alias_is_read_and_a_conflict_refuses_to_start_naming_both_variables() -> None:
    assert load_settings({"PROLIFIC_API_TOKEN": SENTINEL}).api_token == SENTINEL
    assert load_settings({"PROLIFIC_API_TOKEN": SENTINEL, "PROLIFIC_TOKEN": SENTINEL}).api_token == SENTINEL
    with pytest.raises(ConfigurationError) as err:
        load_settings({"PROLIFIC_TOKEN": SENTINEL, "PROLIFIC_API_TOKEN": SENTINEL + "x"})
    assert "PROLIFIC_TOKEN" in str(err.value)
    assert "PROLIFIC_API_TOKEN" in str(err.value)
    assert SENTINEL not in str(err.value)


def test_explicit_modes() -> None:
    assert load_settings({"PROLIFIC_MODE": "sandbox", "PROLIFIC_TOKEN": SENTINEL}).resolved_mode == "sandbox"
    assert load_settings({"PROLIFIC_MODE": "prolific"}).resolved_mode == "prolific"
    assert load_settings({}, mode="prolific").resolved_mode == "prolific"
    with pytest.raises(ConfigurationError, match="PROLIFIC_MODE"):
        load_settings({"PROLIFIC_MODE": "live"})


def test_auto_refuses_the_sandbox_when_the_user_clearly_meant_prolific() -> None:
    with pytest.raises(ConfigurationError, match="set PROLIFIC_TOKEN"):
        load_settings({"PROLIFIC_URL": "https://api.prolific.com"})
    for name in ("PROLIFIC_API_KEY", "PROLIFIC_KEY"):
        with pytest.raises(ConfigurationError, match=f"{name} is set"):
            load_settings({name: "whatever-value"})
    # a loopback URL without a token is fine (a sandbox started by hand)
    assert load_settings({"PROLIFIC_URL": "http://127.0.0.1:8799"}).resolved_mode == "sandbox"
    # an explicit sandbox wish overrides the look-alike check
    assert load_settings({"PROLIFIC_API_KEY": "x", "PROLIFIC_MODE": "sandbox"}).resolved_mode == "sandbox"


@pytest.mark.parametrize(
    "url",
    [
        "http://api.prolific.com",
        "ftp://x.example",
        "https://user:pw@api.prolific.com",
        "https://a.example/api/v1",
        "not a url",
    ],
)
def test_bad_api_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="PROLIFIC_URL"):
        load_settings({"PROLIFIC_URL": url, "PROLIFIC_TOKEN": SENTINEL})


def test_loopback_http_urls_are_allowed() -> None:
    for url in ("http://127.0.0.1:8799", "http://localhost:1/", "http://[::1]:9"):
        assert load_settings({"PROLIFIC_URL": url}).api_url == url.rstrip("/")
        assert is_loopback_url(url)
    assert not is_loopback_url("http://10.0.0.1")


def test_numbers_are_validated_and_the_default_wait_never_exceeds_the_maximum() -> None:
    s = load_settings({"PROLIFIC_MCP_WAIT_SECONDS": "5", "PROLIFIC_MCP_MAX_WAIT_SECONDS": "30"})
    assert (s.wait_seconds, s.max_wait_seconds) == (5, 30)
    with pytest.raises(ConfigurationError, match="PROLIFIC_MCP_MAX_UPLOADS"):
        load_settings({"PROLIFIC_MCP_MAX_UPLOADS": "0"})
    assert load_settings({"PROLIFIC_MCP_MAX_WAIT_SECONDS": "10"}).wait_seconds == 10


def test_workspace_id_must_be_a_safe_id() -> None:
    wid = "6278acb09062db3b35bcbeb0"
    assert load_settings({"PROLIFIC_WORKSPACE_ID": wid}).workspace_id == wid
    with pytest.raises(ConfigurationError, match="PROLIFIC_WORKSPACE_ID"):
        load_settings({"PROLIFIC_WORKSPACE_ID": "../x"})


def test_allowed_dirs_from_the_environment_and_the_cli(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    s = load_settings({"PROLIFIC_MCP_ALLOWED_DIRS": f"{a}{os.pathsep}{b}"})
    assert s.effective_allowed_dirs() == [a.resolve(), b.resolve()]
    assert load_settings({}, allowed_dirs=[str(b)]).effective_allowed_dirs() == [b.resolve()]


def test_the_working_directory_is_the_default_only_when_it_is_a_project(tmp_path: Path) -> None:
    home = tmp_path / "home"
    project = home / "project"
    project.mkdir(parents=True)
    env = {"HOME": str(home)}
    assert unsafe_default_dir_reason(project, env) is None
    assert unsafe_default_dir_reason(Path("/"), env) == "it is the filesystem root"
    assert unsafe_default_dir_reason(home, env) == "it is the home directory itself"
    assert "system directory" in str(unsafe_default_dir_reason(Path("/usr/local/bin"), env))
    (home / ".cache" / "uv").mkdir(parents=True)
    assert "cache directory" in str(unsafe_default_dir_reason(home / ".cache" / "uv", env))
    s = load_settings(env)
    assert s.effective_allowed_dirs(cwd=project) == [project.resolve()]
    assert s.effective_allowed_dirs(cwd=Path("/")) == []


def test_state_dir_per_origin(tmp_path: Path) -> None:
    s = load_settings({"PROLIFIC_MCP_STATE_DIR": str(tmp_path)})
    assert s.state_dir_for("https://api.prolific.com") == tmp_path / "api.prolific.com"
    assert s.state_dir_for("http://127.0.0.1:8799") == tmp_path / "127.0.0.1_8799"
    assert origin_of("HTTPS://API.Prolific.com:443/api/v1/x?y=1") == "https://api.prolific.com"
    assert origin_of("http://127.0.0.1:8799/x") == "http://127.0.0.1:8799"


def test_the_real_environment_is_read_by_pydantic_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROLIFIC_TOKEN", SENTINEL)
    monkeypatch.setenv("PROLIFIC_MCP_READ_ONLY", "true")
    s = load_settings()
    assert s.resolved_mode == "prolific"
    assert s.read_only is True
    assert load_settings(read_only=False).read_only is False
