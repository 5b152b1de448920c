"""Mailu's JSON answers and what each operation declares it may answer.

Mailu's API writes JSON with Python's default separators (``"key": value, ...``), and
Mailu's own compose tests look for such substrings, so the API does the same.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Path
from fastapi.responses import JSONResponse

from roost.web.api import schemas

__all__ = ["MailuJSON", "PathText", "answers", "done"]

#: A name or address in a path: never empty (``/domain/`` is no domain), never huge.
PathText = Annotated[str, Path(min_length=1, max_length=255)]


class MailuJSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(content).encode("utf-8")


def done(message: str) -> MailuJSON:
    return MailuJSON({"code": 200, "message": message})


_REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {"model": schemas.Invalid, "description": "Invalid input"},
    401: {"model": schemas.Message, "description": "No Authorization header"},
    403: {"model": schemas.Message, "description": "Invalid API token"},
    404: {"model": schemas.Result, "description": "Not found"},
    409: {"model": schemas.Result, "description": "Exists, in use, or the domain is full"},
    429: {"model": schemas.Message, "description": "Too many failed attempts from the network"},
    503: {"model": schemas.Result, "description": "The store cannot be reached"},
}


def answers(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The refusals an operation declares: the common ones and ``codes``."""
    wanted = (400, 401, 403, 429, 503, *codes)
    return {code: _REFUSALS[code] for code in sorted(set(wanted))}
