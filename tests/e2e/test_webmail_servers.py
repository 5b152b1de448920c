"""WEBMAIL=roundcube with its database on PostgreSQL or MariaDB (ROUNDCUBE_DB_FLAVOR): the
start creates Roundcube's tables there, a sign-in through its login form is stored there,
and a start without its database stops and says why.
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


@pytest.fixture(
    scope="module",
    params=[("postgresql", "rc-pg", 146), ("mysql", "rc-maria", 147)],
    ids=["postgresql", "mariadb"],
)
def started(request: pytest.FixtureRequest) -> Iterator[tuple[Stack, Account]]:
    flavor, name, host = request.param
    with webmail_on_server(flavor, name, e2e_address(host)) as both:
        yield both


def test_a_sign_in_lands_in_the_server(started: tuple[Stack, Account]) -> None:
    check_sign_in_lands_in_the_server(*started)


def test_without_its_database_the_start_stops_and_says_why(started: tuple[Stack, Account]) -> None:
    check_a_missing_database_stops_the_start(*started)
