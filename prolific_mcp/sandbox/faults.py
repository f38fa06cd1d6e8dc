"""Scripted faults and the request log: what the sandbox does to the next matching requests, and what it saw.

A fault plan is a list of rules, tried in order; the first rule that matches a request and still has uses left
is consumed and applied. A rule matches on `"METHOD glob"` (the glob is `fnmatch`-style on the raw path, without
the query; `*` also crosses `/`; the method may be `*`), optionally restricted to one server (`api` or `s3`).
Requests to the admin routes (`/_sandbox/...`) are never faulted and never logged.

Actions (see docs/sandbox.md for the JSON format):
- `respond` (implied by `status`): answer with that status; an error envelope on the API, S3 XML on the fake S3.
- `drop`: close the connection without a response (a TCP reset), optionally after reading `after_bytes` of body.
- `stall`: read nothing and answer nothing for `seconds`, then reset the connection.
- `redirect`: answer 302 (API) or 307 (S3) with `Location: location`.
- `pass`: handle the request normally (useful with `latency`).
`latency` (seconds) delays any action. `when: "after"` lets the sandbox handle the request first (its side
effects happen: a dataset is created, an object stored) and then replaces the response by the fault.
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypedDict, Unpack

Action = Literal["respond", "drop", "stall", "redirect", "pass"]
Server = Literal["api", "s3"]
ACTIONS: Final = ("respond", "drop", "stall", "redirect", "pass")
HTTP_METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class FaultPlanError(ValueError):
    """A fault rule or plan that cannot be used; the message says which field and why."""


class RuleOptions(TypedDict, total=False):
    """A rule's settings besides `match`, as `make_rule` and `FaultPlan.add` take them (the JSON form's keys)."""

    action: str | None
    times: int | None
    server: str | None
    status: int | None
    xml_code: str | None
    message: str | None
    retry_after: str | int | float | None
    headers: Mapping[str, str] | None
    body: str | None
    content_type: str | None
    seconds: float
    location: str | None
    latency: float
    when: str
    after_bytes: int | None


RULE_KEYS: Final = frozenset({"match", *RuleOptions.__annotations__})


@dataclass(slots=True)
class FaultRule:
    """One scripted fault. `times` is how many requests it applies to (None: every matching request)."""

    match: str
    action: Action
    times: int | None = 1
    server: Server | None = None
    status: int | None = None
    xml_code: str | None = None
    message: str | None = None
    retry_after: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    content_type: str | None = None
    seconds: float = 0.0
    location: str | None = None
    latency: float = 0.0
    when: Literal["before", "after"] = "before"
    after_bytes: int | None = None
    hits: int = 0
    method: str = field(init=False, default="*")
    pattern: str = field(init=False, default="*")

    def __post_init__(self) -> None:
        self.method, self.pattern = _parse_match(self.match)
        self._validate()

    def _validate(self) -> None:
        where = f"fault {self.match!r}"
        if self.action not in ACTIONS:
            raise FaultPlanError(f"{where}: unknown action {self.action!r}; use one of {', '.join(ACTIONS)}")
        if self.times is not None and (not isinstance(self.times, int) or self.times < 1):
            raise FaultPlanError(f"{where}: 'times' must be a positive integer or null (every request)")
        if self.server not in (None, "api", "s3"):
            raise FaultPlanError(f"{where}: 'server' must be 'api' or 's3'")
        if self.when not in ("before", "after"):
            raise FaultPlanError(f"{where}: 'when' must be 'before' or 'after'")
        if self.action == "respond" and (self.status is None or not 100 <= self.status <= 599):
            raise FaultPlanError(f"{where}: a 'respond' fault needs a 'status' between 100 and 599")
        if self.action == "redirect" and not self.location:
            raise FaultPlanError(f"{where}: a 'redirect' fault needs a 'location'")
        if self.action == "redirect" and self.status is not None and not 300 <= self.status <= 399:
            raise FaultPlanError(f"{where}: a redirect status must be 3xx")
        if self.action == "stall" and self.seconds <= 0:
            raise FaultPlanError(f"{where}: a 'stall' fault needs 'seconds' > 0")
        if self.latency < 0 or self.seconds < 0:
            raise FaultPlanError(f"{where}: 'latency' and 'seconds' cannot be negative")
        if self.after_bytes is not None and (self.action != "drop" or self.after_bytes < 0):
            raise FaultPlanError(f"{where}: 'after_bytes' applies to 'drop' only and cannot be negative")
        if self.when == "after" and self.after_bytes is not None:
            raise FaultPlanError(f"{where}: 'after_bytes' drops mid-request; it cannot be combined with 'after'")

    @property
    def remaining(self) -> int | None:
        """Uses left (None: unlimited)."""
        return None if self.times is None else max(self.times - self.hits, 0)

    @property
    def used_up(self) -> bool:
        return self.times is not None and self.hits >= self.times

    def matches(self, method: str, path: str, server: Server) -> bool:
        if self.server is not None and self.server != server:
            return False
        if self.method != "*" and self.method != method.upper():
            return False
        return fnmatch.fnmatchcase(path, self.pattern)

    def to_dict(self) -> dict[str, Any]:
        """The rule in the plan's JSON format, plus `hits` and `remaining`."""
        out: dict[str, Any] = {"match": self.match, "action": self.action, "times": self.times}
        for key in ("server", "status", "xml_code", "message", "retry_after", "body", "content_type", "location"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.headers:
            out["headers"] = dict(self.headers)
        if self.seconds:
            out["seconds"] = self.seconds
        if self.latency:
            out["latency"] = self.latency
        if self.when != "before":
            out["when"] = self.when
        if self.after_bytes is not None:
            out["after_bytes"] = self.after_bytes
        out["hits"] = self.hits
        out["remaining"] = self.remaining
        return out

    @classmethod
    def from_dict(cls, obj: object) -> FaultRule:
        """A rule from its JSON form; raises FaultPlanError naming the problem."""
        if not isinstance(obj, Mapping):
            raise FaultPlanError('each fault must be an object such as {"match": "PUT *", "status": 503}')
        unknown = sorted(set(obj) - RULE_KEYS)
        if unknown:
            raise FaultPlanError(
                f"fault {obj.get('match')!r}: unknown key(s) {', '.join(map(repr, unknown))}; "
                f"known keys: {', '.join(sorted(RULE_KEYS))}"
            )
        match = obj.get("match")
        if not isinstance(match, str):
            raise FaultPlanError('each fault needs "match": "METHOD glob-on-path", e.g. "PUT *"')
        try:
            return make_rule(
                match,
                action=_opt(obj, "action", str),
                times=obj.get("times", 1),
                server=_opt(obj, "server", str),
                status=_opt(obj, "status", int),
                xml_code=_opt(obj, "xml_code", str),
                message=_opt(obj, "message", str),
                retry_after=None if obj.get("retry_after") is None else str(obj["retry_after"]),
                headers=_headers(obj.get("headers")),
                body=_opt(obj, "body", str),
                content_type=_opt(obj, "content_type", str),
                seconds=float(_opt(obj, "seconds", (int, float)) or 0.0),
                location=_opt(obj, "location", str),
                latency=float(_opt(obj, "latency", (int, float)) or 0.0),
                when=_opt(obj, "when", str) or "before",
                after_bytes=_opt(obj, "after_bytes", int),
            )
        except TypeError as exc:
            raise FaultPlanError(f"fault {match!r}: {exc}") from None


def _opt(obj: Mapping[str, Any], key: str, types: type | tuple[type, ...]) -> Any:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, types):
        names = types.__name__ if isinstance(types, type) else " or ".join(t.__name__ for t in types)
        raise TypeError(f"{key!r} must be {names}, not {value!r}")
    return value


def _headers(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise TypeError("'headers' must be an object of header names to values")
    return {str(k): str(v) for k, v in value.items()}


def _parse_match(match: str) -> tuple[str, str]:
    parts = match.split()
    if parts == ["*"]:
        return "*", "*"
    if len(parts) != 2:
        raise FaultPlanError(
            f"fault match {match!r} must be 'METHOD glob-on-path' (e.g. 'PUT *', 'GET /api/v1/workspaces/') or '*'"
        )
    method, pattern = parts[0].upper(), parts[1]
    if method != "*" and method not in HTTP_METHODS:
        raise FaultPlanError(f"fault match {match!r}: unknown method {parts[0]!r}")
    if not pattern.startswith(("/", "*")):
        raise FaultPlanError(f"fault match {match!r}: the path glob must start with '/' or '*'")
    return method, pattern


def make_rule(match: str, **options: Unpack[RuleOptions]) -> FaultRule:
    """Build a rule; the action defaults to `respond` with a status, `redirect` with a location, else `pass`."""
    _parse_match(match)
    status, location, latency = options.get("status"), options.get("location"), options.get("latency", 0.0)
    action = options.get("action")
    if action is None:
        if status is not None and location is None:
            action = "respond"
        elif location is not None:
            action = "redirect"
        elif latency:
            action = "pass"
        else:
            raise FaultPlanError(
                f"fault {match!r}: say what to do: a 'status', an 'action' (drop, stall, redirect, pass) or a 'latency'"
            )
    retry_after = options.get("retry_after")
    return FaultRule(
        match=match,
        action=action,  # type: ignore[arg-type]
        times=options.get("times", 1),
        server=options.get("server"),  # type: ignore[arg-type]
        status=status,
        xml_code=options.get("xml_code"),
        message=options.get("message"),
        retry_after=None if retry_after is None else _retry_after_text(retry_after),
        headers=dict(options.get("headers") or {}),
        body=options.get("body"),
        content_type=options.get("content_type"),
        seconds=float(options.get("seconds", 0.0)),
        location=location,
        latency=float(latency),
        when=options.get("when", "before"),  # type: ignore[arg-type]
        after_bytes=options.get("after_bytes"),
    )


def _retry_after_text(value: str | int | float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parse_plan(obj: object) -> list[FaultRule]:
    """The rules of a plan `{"faults": [...]}` (a bare list is accepted too)."""
    if isinstance(obj, Mapping):
        unknown = sorted(set(obj) - {"faults"})
        if unknown:
            raise FaultPlanError(f'a fault plan is {{"faults": [...]}}; unknown key(s): {", ".join(unknown)}')
        obj = obj.get("faults", [])
    if not isinstance(obj, list):
        raise FaultPlanError('a fault plan is {"faults": [ {...}, ... ]}')
    return [FaultRule.from_dict(item) for item in obj]


class FaultPlan:
    """The live list of fault rules, shared by the server thread and the test (thread-safe)."""

    def __init__(self, rules: Iterable[FaultRule] = ()) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = list(rules)

    def add(self, match: str, **options: Unpack[RuleOptions]) -> FaultRule:
        """Append a rule (see the module docstring) and return it; `rule.hits` counts its uses."""
        rule = make_rule(match, **options)
        with self._lock:
            self._rules.append(rule)
        return rule

    def extend(self, rules: Iterable[FaultRule]) -> None:
        with self._lock:
            self._rules.extend(rules)

    def load(self, plan: object, *, replace: bool = False) -> list[FaultRule]:
        """Add the rules of a plan in its JSON form (replacing the current ones if `replace`)."""
        rules = parse_plan(plan)
        with self._lock:
            if replace:
                self._rules.clear()
            self._rules.extend(rules)
        return rules

    def take(self, method: str, path: str, server: Server) -> FaultRule | None:
        """Consume and return the first rule matching the request that still has uses left."""
        with self._lock:
            for rule in self._rules:
                if not rule.used_up and rule.matches(method, path, server):
                    rule.hits += 1
                    return rule
        return None

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def unused(self) -> list[FaultRule]:
        """Rules with uses left (an unlimited rule counts until it has matched once)."""
        with self._lock:
            return [r for r in self._rules if (r.times is None and r.hits == 0) or (r.remaining or 0) > 0]

    def clear(self) -> int:
        """Remove every rule; returns how many there were."""
        with self._lock:
            count = len(self._rules)
            self._rules.clear()
            return count

    def __len__(self) -> int:
        with self._lock:
            return len(self._rules)

    def __iter__(self) -> Iterator[FaultRule]:
        return iter(self.rules())


@dataclass(slots=True)
class RequestRecord:
    """One request as the sandbox received it.

    `body_size` counts the body bytes the sandbox read; `status` is the response status (None if none was sent:
    a dropped connection); `finished` turns true once the sandbox is done with the request.
    """

    server: Server
    method: str
    path: str
    query: str
    headers: dict[str, str]
    at: float
    body_size: int = 0
    status: int | None = None
    fault: str | None = None
    finished: bool = False

    @property
    def params(self) -> dict[str, str]:
        """The query parameters (the last value of a repeated one)."""
        from urllib.parse import parse_qsl

        return dict(parse_qsl(self.query, keep_blank_values=True))

    def to_dict(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": dict(self.headers),
            "at": self.at,
            "body_size": self.body_size,
            "status": self.status,
            "fault": self.fault,
            "finished": self.finished,
        }


class RequestLog(list[RequestRecord]):
    """Every request the sandbox received, oldest first (`clear()` empties it)."""

    def for_server(self, server: Server) -> list[RequestRecord]:
        return [r for r in list(self) if r.server == server]
