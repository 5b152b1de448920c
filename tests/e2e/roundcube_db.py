"""WEBMAIL=roundcube with its database on a server (test_webmail_servers.py): a stack
whose Roundcube has a database and user of its own on the local PostgreSQL or MariaDB,
its password given as ROUNDCUBE_DB_PW_FILE, and the check that a sign-in (Roost's single
sign-on, then the webmail) lands in that database.
"""

from __future__ import annotations

import base64
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import text

from roost.runner.main import EXIT_CONFIG
from tests.db.roundcube_accounts import Account, roundcube_account
from tests.e2e.conftest import require_root
from tests.e2e.stack import Stack, make_base, running
from tests.e2e.test_webmail import sign_in


def webmail_stack(name: str, address: str, account: Account, **values: str) -> Stack:
    """A stack with Roundcube on the account's database, the password in a 0600 file."""
    secret = make_base() / f"{name}.roundcube-db-pw"
    secret.write_text(account.password + "\n")
    secret.chmod(0o600)
    settings = account.settings()
    del settings["ROUNDCUBE_DB_PW"]
    settings |= {"ROUNDCUBE_DB_PW_FILE": str(secret), "WEBMAIL": "roundcube"}
    settings |= {"WEB_WEBMAIL": "/mail", "PORTS": "25,80,443,465,993"}
    return Stack(name, address, settings=settings | values)


@contextmanager
def webmail_on_server(flavor: str, name: str, address: str) -> Iterator[tuple[Stack, Account]]:
    require_root()
    with (
        roundcube_account(flavor) as account,
        running(webmail_stack(name, address, account)) as stack,
    ):
        yield stack, account


def check_a_missing_database_stops_the_start(stack: Stack, account: Account) -> None:
    """`roost up` with a database name the server lacks stops before any daemon starts,
    saying what Roundcube's server said and which settings to check, not the password."""
    missing = webmail_stack(
        f"{stack.name}-missing", stack.address, account, ROUNDCUBE_DB_NAME="absent"
    )
    with pytest.raises(RuntimeError) as caught:
        missing.start()
    assert missing.process is not None and missing.process.returncode == EXIT_CONFIG
    log = missing.log_text()
    assert "roost: error: WEBMAIL=roundcube: Roundcube could not create its tables" in log
    assert {"postgresql": '"absent" does not exist', "mysql": "Access denied"}[
        account.flavor
    ] in log
    assert "ROUNDCUBE_DB_NAME" in log and account.password not in log, str(caught.value)


def check_sign_in_lands_in_the_server(stack: Stack, account: Account) -> None:
    """A user signs in (single sign-on) and opens the webmail: Roundcube's row for the
    user and the session are in the server's database, no SQLite file was made, and the
    database password is only in config.inc.php, which the world cannot read."""
    password = secrets.token_urlsafe(12)
    user = stack.add_user(f"rc{secrets.token_hex(3)}", password)
    with httpx.Client(base_url=f"https://{stack.address}", verify=False, timeout=20) as client:
        sign_in(client, user, password)
    engine = account.engine()
    with engine.connect() as connection:
        users = connection.execute(text("SELECT username FROM users")).scalars().all()
        sessions = connection.execute(text("SELECT vars FROM session")).scalars().all()
    engine.dispose()
    assert users == [user]
    # Roundcube keeps a session's variables base64-encoded (rcube_session_db::write).
    signed_in = f'username|s:{len(user)}:"{user}";'
    assert any(signed_in in base64.b64decode(row).decode() for row in sessions), sessions
    assert not (stack.root / "webmail" / "roundcube.db").exists()
    config = stack.root / "etc" / "roundcube" / "config.inc.php"
    assert quote(account.password, safe="") in config.read_text()
    assert not config.stat().st_mode & stat.S_IROTH
    assert account.password not in stack.log_text()
