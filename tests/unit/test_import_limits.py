"""``roost config-import --check-limits``: the domains' max_users / max_aliases on import.

Mailu's import ignores both limits (an import restores a state); the option applies them,
in replace and update mode alike, and the refusal names the domain and the limit.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from roost.store.models import Alias, User
from tests.unit.test_cli_support import Stack, make_stack

# One domain that allows one user and one alias, and a document with two of each.
OVER_LIMITS = """\
domain:
  - name: example.com
    max_users: 1
    max_aliases: 1
user:
  - email: ann@example.com
    password: '{PLAIN}one'
  - email: bob@example.com
    password: '{PLAIN}two'
alias:
  - email: info@example.com
    destination: [ann@example.com]
  - email: sales@example.com
    destination: [bob@example.com]
"""


@pytest.fixture
def stack(tmp_path) -> Stack:
    return make_stack(tmp_path)


def counts(stack: Stack) -> tuple[int, int]:
    with stack.session() as session:
        users = session.scalar(select(func.count()).select_from(User))
        aliases = session.scalar(select(func.count()).select_from(Alias))
    return int(users or 0), int(aliases or 0)


def test_check_limits_refuses_users_and_aliases_beyond_the_domain_limits(stack: Stack) -> None:
    result = stack.roost("config-import", "--check-limits", input=OVER_LIMITS)
    assert result.exit_code != 0
    assert "user[1].email" in result.stderr
    assert "domain 'example.com' already has its maximum of 1 users" in result.stderr
    assert "alias[1].email" in result.stderr
    assert "domain 'example.com' already has its maximum of 1 aliases" in result.stderr
    assert "user[0]" not in result.stderr and "alias[0]" not in result.stderr
    assert counts(stack) == (0, 0)  # nothing committed


def test_without_check_limits_the_import_ignores_them_as_mailu_does(stack: Stack) -> None:
    result = stack.roost("config-import", input=OVER_LIMITS)
    assert result.exit_code == 0, result.stderr
    assert counts(stack) == (2, 2)


def test_check_limits_counts_what_is_stored_in_update_mode(stack: Stack) -> None:
    first = OVER_LIMITS.split("  - email: bob@example.com")[0]
    assert stack.roost("config-import", input=first).exit_code == 0
    assert counts(stack) == (1, 0)
    more = "user:\n  - email: carl@example.com\n    password: '{PLAIN}three'\n"
    result = stack.roost("config-import", "--update", "--check-limits", input=more)
    assert result.exit_code != 0
    assert "- user[0].email : domain 'example.com' already has its maximum of 1 users" in (
        result.stderr
    )
    assert counts(stack) == (1, 0)
    # Changing a user that exists is no new user: the limit does not stand in the way.
    same = "user:\n  - email: ann@example.com\n    displayed_name: Ann\n"
    result = stack.roost("config-import", "--update", "--check-limits", input=same)
    assert result.exit_code == 0, result.stderr


def test_check_limits_allows_what_fits(stack: Stack) -> None:
    fits = OVER_LIMITS.replace("max_users: 1", "max_users: 2").replace(
        "max_aliases: 1", "max_aliases: 2"
    )
    result = stack.roost("config-import", "--check-limits", input=fits)
    assert result.exit_code == 0, result.stderr
    assert counts(stack) == (2, 2)
