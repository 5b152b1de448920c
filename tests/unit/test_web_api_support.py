"""Shared harness for the API tests: build_api on a real temporary SQLite store.

No gate runs, so every change's reload request fails; work.change turns that into a
warning, which these tests also check. No tests of its own.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from fastapi.testclient import TestClient

from roost.gate.limiter import AuthLimiter
from roost.layout import Layout
from roost.web.api import build_api
from tests.unit.test_cli_support import Stack, make_stack

TOKEN = "0123456789abcdef0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def api_stack(tmp_path: Path, extra: str = "") -> tuple[Stack, TestClient]:
    stack = make_stack(tmp_path, f"API=true\nAPI_TOKEN={TOKEN}\n{extra}")
    settings = stack.settings
    limiter = AuthLimiter(settings, Layout(settings).redis_socket, use_redis=False)
    client = TestClient(
        build_api(settings, limiter=limiter), headers={**AUTH, "X-Real-IP": "192.0.2.10"}
    )
    return stack, client


def with_settings(stack: Stack, **changes: object) -> Stack:
    return dataclasses.replace(stack, settings=dataclasses.replace(stack.settings, **changes))
