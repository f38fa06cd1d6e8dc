"""Reading Prolific's answers: a body as JSON, then as the model the API documents; anything else is an
`UnexpectedResponseError` that says so."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from prolific_mcp.api.errors import Resource, UnexpectedResponseError

M = TypeVar("M", bound=BaseModel)


def parse_json(body: bytes, status: int, resource: Resource) -> Any:
    """The parsed answer; None for an empty one (a 204, or a 2xx without a body), which callers judge."""
    if not body.strip():
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise UnexpectedResponseError(
            f"Prolific answered the request for {resource.describe()} (HTTP {status}) with something that "
            "is not JSON: try again; if it persists, check PROLIFIC_URL (normally https://api.prolific.com)"
        ) from None


def parse_model(model: type[M], data: Any, resource: Resource) -> M:
    if data is None:
        raise UnexpectedResponseError(
            f"Prolific's answer for {resource.describe()} is empty: try again; if it persists, please report it"
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for item in exc.errors()[:5]:
            where = ".".join(str(part) for part in item["loc"]) or "the body"
            problems.append(f"'{where}' missing" if item["type"] == "missing" else f"'{where}' invalid")
        raise UnexpectedResponseError(
            f"Prolific's answer for {resource.describe()} is not what the API documents "
            f"({'; '.join(problems)}): try again; if it persists, please report it"
        ) from None
