"""Schemathesis against the API's served OpenAPI document, in-process.

Every operation of the document is called with generated input, valid and invalid for the
schema, on a store holding a domain, a user, an alias, a relay and a token. Each answer
must be no 5xx, a status the document declares, JSON matching the declared schema, and
input the schema forbids must be refused with a 4xx. Kept small (a few examples per
operation) so the module runs in about a minute on a loaded machine.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.unit.test_web_api_support import AUTH, api_stack

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


def _seeded_app() -> Any:
    """The app on a fresh store with one object of each kind (removed at exit)."""
    where = Path(tempfile.mkdtemp(prefix="roost-api-schema-"))
    atexit.register(shutil.rmtree, where, ignore_errors=True)
    _, client = api_stack(where)
    for path, body in (
        ("/domain", {"name": "example.com", "alternatives": ["alt.example"]}),
        ("/user", {"email": "joe@example.com", "raw_password": "pw-123456"}),
        ("/alias", {"email": "info@example.com", "destination": ["joe@example.com"]}),
        ("/relay", {"name": "relayed.example"}),
        ("/token", {"email": "joe@example.com"}),
        ("/domain/example.com/manager", {"user_email": "joe@example.com"}),
    ):
        assert client.post(path, json=body).status_code == 200, path
    return client.app


# Loaded at collection: schemathesis makes one test per operation from the document.
schema = schemathesis.openapi.from_asgi("/openapi.json", _seeded_app())


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_conforms(case: Any) -> None:
    case.call_and_validate(headers=AUTH, checks=CHECKS)
