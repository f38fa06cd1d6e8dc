"""Settings (docs/architecture.md, Settings): environment variables and CLI flags, validated once at start-up.

`load_settings()` is the only entry point. It never lets a pydantic error (which quotes input values) escape:
every problem becomes a `ConfigurationError` that names the variable and says what to set.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, PrivateAttr, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from prolific_mcp.net import base_url_problem
from prolific_mcp.net import is_loopback_host as is_loopback_host  # re-exported for older imports
from prolific_mcp.net import is_loopback_url as is_loopback_url  # re-exported for older imports
from prolific_mcp.net import origin_of as origin_of  # re-exported for older imports
from prolific_mcp.redaction import register_secret

DEFAULT_API_URL = "https://api.prolific.com"
APP_DIR_NAME = "prolific-datasets-mcp"

Mode = Literal["auto", "sandbox", "prolific"]
ResolvedMode = Literal["sandbox", "prolific"]

LOOKALIKE_TOKEN_VARIABLES = (
    "PROLIFIC_API_KEY",
    "PROLIFIC_KEY",
    "PROLIFIC_APIKEY",
    "PROLIFIC_ACCESS_TOKEN",
    "PROLIFIC_AUTH_TOKEN",
    "PROLIFIC_SECRET",
)
"""Variables a user may set meaning the token; in `auto` mode they signal a misconfiguration, not the sandbox."""

_SYSTEM_DIRS = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/proc",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var",
    "/opt",
    "/snap",
    "/System",
    "/Library",
    "/Applications",
    "/private",
    "/Volumes",
)


_FROM_MAPPING: ContextVar[bool] = ContextVar("_FROM_MAPPING", default=False)


class ConfigurationError(Exception):
    """The configuration cannot work; the message names the setting and what to do."""


class StateDirError(ConfigurationError):
    """The state directory (PROLIFIC_MCP_STATE_DIR) cannot be created or written; the message says what to do."""


MAX_SHOWN_PATH = 200
"""The most characters of a path any message repeats (the middle gives way to an ellipsis)."""


def shown_path(path: object, limit: int = MAX_SHOWN_PATH) -> str:
    """A path as a message may repeat it: at most `limit` characters, keeping its start and its end."""
    text = str(path)
    if len(text) <= limit:
        return text
    tail = limit // 3
    return f"{text[: limit - tail - 1]}…{text[-tail:]}"


def prepare_state_dir(folder: Path) -> Path:
    """Create a state folder `0700` (and any missing parent), make an existing one of ours `0700`, and check it
    takes a file; a StateDirError names PROLIFIC_MCP_STATE_DIR and what to do."""
    try:
        missing = [p for p in (folder, *folder.parents) if not p.exists()]
        for part in reversed(missing):
            part.mkdir(mode=0o700, exist_ok=True)
        st = folder.stat()
        if hasattr(os, "getuid") and st.st_uid == os.getuid() and st.st_mode & 0o077:
            folder.chmod(0o700)
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise StateDirError(
            f"the state directory {shown_path(folder)} cannot be used ({reason}): the upload ledger lives there. "
            "Make it writable, or set PROLIFIC_MCP_STATE_DIR to a folder you can write to, and restart the server"
        ) from None
    return folder


def default_state_dir(env: Mapping[str, str] | None = None) -> Path:
    """The platform's user state directory plus `prolific-datasets-mcp`."""
    env = os.environ if env is None else env
    home = Path(env.get("HOME") or Path.home())
    if sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    elif sys.platform == "win32":
        base = Path(env.get("LOCALAPPDATA") or home / "AppData" / "Local")
    else:
        base = Path(env.get("XDG_STATE_HOME") or home / ".local" / "state")
    return base / APP_DIR_NAME


def _cache_dirs(env: Mapping[str, str]) -> list[Path]:
    home = Path(env.get("HOME") or Path.home())
    dirs = [home / ".cache", home / "Library" / "Caches"]
    if env.get("XDG_CACHE_HOME"):
        dirs.append(Path(env["XDG_CACHE_HOME"]))
    if env.get("LOCALAPPDATA"):
        dirs.append(Path(env["LOCALAPPDATA"]) / "Temp")
    return dirs


def unsafe_default_dir_reason(cwd: Path, env: Mapping[str, str] | None = None) -> str | None:
    """Why the working directory must not become the default allowed directory, or None if it may.

    Clients start servers in `/`, the home directory, system and cache directories; none of those is a project.
    """
    env = os.environ if env is None else env
    resolved = cwd.resolve()
    home = Path(env.get("HOME") or Path.home()).resolve()
    if resolved == Path(resolved.anchor):
        return "it is the filesystem root"
    if resolved == home:
        return "it is the home directory itself"
    for system in _SYSTEM_DIRS:
        root = Path(system)
        if resolved == root or resolved.is_relative_to(root):
            return f"it is a system directory ({system})"
    if sys.platform == "win32" and resolved.is_relative_to(Path(os.environ.get("SYSTEMROOT", r"C:\Windows"))):
        return "it is a system directory"
    for cache in _cache_dirs(env):
        try:
            cache = cache.resolve()
        except OSError:
            continue
        if resolved == cache or resolved.is_relative_to(cache):
            return f"it is a cache directory ({cache})"
    return None


def origin_slug(origin: str) -> str:
    """A directory name for an API origin: 'api.prolific.com', '127.0.0.1_8799'."""
    parts = urlsplit(origin)
    host = (parts.hostname or "unknown").replace(":", "_")
    return f"{host}_{parts.port}" if parts.port else host


class Settings(BaseSettings):
    """Every setting (docs/architecture.md, Settings). Build with `load_settings()`, not directly."""

    model_config = SettingsConfigDict(
        env_prefix="", case_sensitive=True, populate_by_name=True, extra="ignore", frozen=True
    )

    token: SecretStr | None = Field(default=None, validation_alias=AliasChoices("token", "PROLIFIC_TOKEN"))
    token_alias: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("token_alias", "PROLIFIC_API_TOKEN"), exclude=True
    )
    api_url: str = Field(default=DEFAULT_API_URL, validation_alias=AliasChoices("api_url", "PROLIFIC_URL"))
    api_url_was_set: bool = Field(default=False, exclude=True)
    mode: Mode = Field(default="auto", validation_alias=AliasChoices("mode", "PROLIFIC_MODE"))
    workspace_id: str | None = Field(
        default=None, validation_alias=AliasChoices("workspace_id", "PROLIFIC_WORKSPACE_ID")
    )
    allowed_dirs: Annotated[list[Path] | None, NoDecode] = Field(
        default=None, validation_alias=AliasChoices("allowed_dirs", "PROLIFIC_MCP_ALLOWED_DIRS")
    )
    state_dir: Path = Field(
        default_factory=default_state_dir, validation_alias=AliasChoices("state_dir", "PROLIFIC_MCP_STATE_DIR")
    )
    read_only: bool = Field(default=False, validation_alias=AliasChoices("read_only", "PROLIFIC_MCP_READ_ONLY"))
    wait_seconds: float = Field(
        default=50, ge=0, validation_alias=AliasChoices("wait_seconds", "PROLIFIC_MCP_WAIT_SECONDS")
    )
    max_wait_seconds: float = Field(
        default=900, ge=0, validation_alias=AliasChoices("max_wait_seconds", "PROLIFIC_MCP_MAX_WAIT_SECONDS")
    )
    max_uploads: int = Field(
        default=4, ge=1, le=64, validation_alias=AliasChoices("max_uploads", "PROLIFIC_MCP_MAX_UPLOADS")
    )
    http_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("http_token", "PROLIFIC_MCP_HTTP_TOKEN")
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments over the environment; only the arguments when built from an explicit mapping."""
        if _FROM_MAPPING.get():
            return (init_settings,)
        return (init_settings, env_settings)

    @field_validator("token", "token_alias", "http_token", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, str):
            return value.strip()
        return value

    @field_validator("allowed_dirs", mode="before")
    @classmethod
    def _split_dirs(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [Path(p).expanduser() for p in value.split(os.pathsep) if p.strip()]
        if isinstance(value, list | tuple):
            return [Path(str(p)).expanduser() for p in value if str(p).strip()]
        return value

    @field_validator("api_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        problem = base_url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        if urlsplit(value).path not in ("", "/"):
            raise ValueError("must be an origin only (scheme and host), such as https://api.prolific.com")
        return value

    @field_validator("workspace_id")
    @classmethod
    def _check_workspace(cls, value: str | None) -> str | None:
        from prolific_mcp.ids import check_id

        if value is None or not value.strip():
            return None
        return check_id(value.strip(), "PROLIFIC_WORKSPACE_ID")

    # ----- derived values -----

    @property
    def api_token(self) -> str | None:
        """The API token, from PROLIFIC_TOKEN or its alias PROLIFIC_API_TOKEN."""
        secret = self.token or self.token_alias
        return secret.get_secret_value() if secret else None

    @property
    def resolved_mode(self) -> ResolvedMode:
        """'sandbox' when the server should spawn and use its local sandbox, else 'prolific'."""
        if self.mode == "sandbox":
            return "sandbox"
        if self.mode == "prolific":
            return "prolific"
        return "prolific" if self.api_token else "sandbox"

    _resolved_dirs: tuple[Path, ...] | None = PrivateAttr(default=None)
    """The allowed directories as resolved once, by `load_settings`."""

    def effective_allowed_dirs(self, cwd: Path | None = None) -> list[Path]:
        """The resolved directories files may be read from; the working directory by default when it is safe.

        Resolved once, when the settings are loaded: replacing a directory (or a link to it) afterwards does not
        move the boundary. Passing `cwd` resolves afresh for that working directory."""
        if cwd is None and self._resolved_dirs is not None:
            return list(self._resolved_dirs)
        return self._resolve_dirs(cwd)

    def _resolve_dirs(self, cwd: Path | None) -> list[Path]:
        if self.allowed_dirs is not None:
            return [Path(os.path.realpath(p)) for p in self.allowed_dirs]
        cwd = Path.cwd() if cwd is None else cwd
        if unsafe_default_dir_reason(cwd) is not None:
            return []
        return [Path(os.path.realpath(cwd))]

    def state_dir_for(self, api_origin: str) -> Path:
        """The state folder of one API origin (the sandbox and Prolific never share a ledger)."""
        return self.state_dir / origin_slug(api_origin)


ENV_VARS: dict[str, str] = {
    "token": "PROLIFIC_TOKEN",
    "token_alias": "PROLIFIC_API_TOKEN",
    "api_url": "PROLIFIC_URL",
    "mode": "PROLIFIC_MODE",
    "workspace_id": "PROLIFIC_WORKSPACE_ID",
    "allowed_dirs": "PROLIFIC_MCP_ALLOWED_DIRS",
    "state_dir": "PROLIFIC_MCP_STATE_DIR",
    "read_only": "PROLIFIC_MCP_READ_ONLY",
    "wait_seconds": "PROLIFIC_MCP_WAIT_SECONDS",
    "max_wait_seconds": "PROLIFIC_MCP_MAX_WAIT_SECONDS",
    "max_uploads": "PROLIFIC_MCP_MAX_UPLOADS",
    "http_token": "PROLIFIC_MCP_HTTP_TOKEN",
}
"""Each setting's environment variable (the README's settings table lists the same)."""


def _describe_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = str(err["loc"][0]) if err["loc"] else "settings"
        msg = str(err["msg"]).removeprefix("Value error, ")
        lines.append(f"{ENV_VARS.get(loc, loc)}: {msg}")
    return "invalid configuration: " + "; ".join(lines)


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read the environment (and CLI overrides), check the cross-setting rules, and register the token.

    Raises ConfigurationError with a message that names the variables involved and never their values.
    """
    env = dict(os.environ if environ is None else environ)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    try:
        settings = Settings(**overrides) if environ is None else _settings_from_mapping(env, overrides)
    except ValidationError as exc:
        raise ConfigurationError(_describe_validation_error(exc)) from None
    url_was_set = bool(env.get("PROLIFIC_URL", "").strip()) or "api_url" in overrides
    settings = settings.model_copy(update={"api_url_was_set": url_was_set})

    if settings.token and settings.token_alias and settings.token != settings.token_alias:
        raise ConfigurationError(
            "PROLIFIC_TOKEN and PROLIFIC_API_TOKEN are both set and differ: unset one of them "
            "(PROLIFIC_TOKEN is the usual name) so it is clear which token to use."
        )
    register_secret(settings.api_token)
    if settings.http_token:
        register_secret(settings.http_token.get_secret_value())

    if settings.mode == "auto" and not settings.api_token:
        if url_was_set and not is_loopback_url(settings.api_url):
            raise ConfigurationError(
                f"PROLIFIC_URL is set to {settings.api_url} but no PROLIFIC_TOKEN is set: set PROLIFIC_TOKEN to "
                "use Prolific, or unset PROLIFIC_URL (or set PROLIFIC_MODE=sandbox) to use the local sandbox."
            )
        lookalikes = [name for name in LOOKALIKE_TOKEN_VARIABLES if env.get(name, "").strip()]
        if lookalikes:
            raise ConfigurationError(
                f"{', '.join(lookalikes)} is set but the server reads its token from PROLIFIC_TOKEN: rename the "
                "variable to PROLIFIC_TOKEN (or set PROLIFIC_MODE=sandbox to use the local sandbox on purpose)."
            )
    if settings.max_wait_seconds < settings.wait_seconds:
        settings = settings.model_copy(update={"wait_seconds": settings.max_wait_seconds})
    settings._resolved_dirs = tuple(settings.effective_allowed_dirs())  # once, at start
    return settings


def _settings_from_mapping(env: Mapping[str, str], overrides: Mapping[str, Any]) -> Settings:
    """Build Settings from an explicit mapping instead of os.environ (tests, doctor)."""
    values: dict[str, Any] = {field: env[var] for field, var in ENV_VARS.items() if var in env}
    if "PROLIFIC_MCP_STATE_DIR" not in env:
        values["state_dir"] = default_state_dir(env)
    values.update(overrides)
    reset = _FROM_MAPPING.set(True)
    try:
        return Settings(**values)
    finally:
        _FROM_MAPPING.reset(reset)
