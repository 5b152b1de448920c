"""WEBMAIL=roundcube with its database on PostgreSQL (ROUNDCUBE_DB_FLAVOR=postgresql): the start
creates Roundcube's tables there, a sign-in through its login form is stored there, and a
start without its database stops and says why.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.db.roundcube_accounts import Account
from tests.e2e.roundcube_db import (
    check_a_missing_database_stops_the_start,
    check_sign_in_lands_in_the_server,
    webmail_on_server,
)
from tests.e2e.stack import Stack, e2e_address

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def started() -> Iterator[tuple[Stack, Account]]:
    with webmail_on_server("postgresql", "rc-pg", e2e_address(146)) as both:
        yield both


def test_a_sign_in_lands_in_postgresql(started: tuple[Stack, Account]) -> None:
    check_sign_in_lands_in_the_server(*started)


def test_without_its_database_the_start_stops_and_says_why(started: tuple[Stack, Account]) -> None:
    check_a_missing_database_stops_the_start(*started)
