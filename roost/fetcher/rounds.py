"""Rounds of fetching: every FETCHMAIL_DELAY seconds, each account once.

A round reads the accounts of enabled users from the store, runs fetchmail once for each
(one after another, as Mailu's loop does, so one slow server delays only the accounts after
it), and records in one transaction when each was checked and the first line of what went
wrong (empty when it worked, "no mail" included). One transaction a round, not one an
account: every commit makes the gate reload its index.

The run control goes to fetchmail's standard input, so the remote password is in no file,
no argument list and no log; fetchmail's output is logged and stored with the password
blanked out, should a server ever echo it. UID files of accounts that no longer exist are
removed, so a new account with a reused id starts afresh.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import time
from collections.abc import Callable
from typing import NoReturn

from roost.layout import POSTFIX_FRONT_PORT, Layout
from roost.services.base import ServiceConfigError
from roost.services.fetchmail import rc
from roost.services.fetchmail.service import find_fetchmail, run_as
from roost.store import work
from roost.store.entities import fetch as fetch_entity
from roost.store.models import Fetch

__all__ = ["RUN_TIMEOUT", "fetch_account", "fetch_round", "run"]

log = logging.getLogger("roost.fetcher")

#: The longest one account's run may take (a first fetch of a large mailbox); fetchmail
#: itself gives up on a server silent for 300 s.
RUN_TIMEOUT = 3600
_HIDDEN = "*****"


def _account(row: Fetch) -> rc.Account:
    return rc.Account(
        id=row.id,
        protocol=row.protocol,
        host=row.host,
        port=row.port,
        tls=row.tls,
        username=row.username,
        password=row.password,
        keep=row.keep,
        scan=row.scan,
        invisible=row.invisible,
        folders=tuple(row.folders or ()),
        recipient=row.user_email,
    )


def _environment(layout: Layout) -> dict[str, str]:
    home = str(layout.fetchmail_home)
    # C.UTF-8: fetchmail's messages in English, whatever the host's locale.
    return {"HOME": home, "FETCHMAILHOME": home, "PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"}


def fetch_account(layout: Layout, account: rc.Account) -> str:
    """Run fetchmail once for ``account``; the error line to show ("" when it worked)."""
    delivery = rc.Delivery(layout.lmtp_socket, layout.internal_address, POSTFIX_FRONT_PORT)
    try:
        control = rc.render(account, delivery, layout.settings.FETCHMAIL_OPTIONS)
        command = run_as() + rc.argv(
            find_fetchmail(),
            layout.fetchmail_home,
            layout.fetchmail_idfile(account.id),
            account.invisible,
        )
    except (rc.RcError, ServiceConfigError) as exc:
        return str(exc)
    try:
        done = subprocess.run(
            command,
            input=control,
            capture_output=True,
            text=True,
            errors="replace",
            env=_environment(layout),
            timeout=RUN_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"fetchmail was stopped after {RUN_TIMEOUT} seconds; it will try again"
    output = (done.stderr + done.stdout).splitlines()
    if account.password:
        output = [line.replace(account.password, _HIDDEN) for line in output]
    # "No mail" every round is no news.
    level = logging.DEBUG if done.returncode == 1 else logging.INFO
    for line in output:
        log.log(level, "#%d %s@%s: %s", account.id, account.username, account.host, line)
    return rc.error_line(done.returncode, output)


def _prune(layout: Layout, ids: set[int]) -> None:
    """Remove the UID files of accounts that are gone."""
    try:
        names = os.listdir(layout.fetchmail_home)
    except FileNotFoundError:
        return
    for name in names:
        stem, dot, suffix = name.partition(".")
        if dot and suffix == "ids" and stem.isdigit() and int(stem) not in ids:
            (layout.fetchmail_home / name).unlink(missing_ok=True)


def fetch_round(
    layout: Layout, fetch: Callable[[Layout, rc.Account], str] = fetch_account
) -> dict[int, str]:
    """Fetch every account once and record the results; each account's error line."""
    with work.read(layout.settings) as db:
        accounts = [_account(row) for row in fetch_entity.accounts_to_fetch(db)]
        every_id = fetch_entity.fetch_ids(db)
    _prune(layout, every_id)
    results: dict[int, tuple[dt.datetime, str]] = {}
    for account in accounts:
        error = fetch(layout, account)
        results[account.id] = (dt.datetime.now().replace(microsecond=0), error)
        if error:
            log.warning("fetched account #%d (%s): %s", account.id, account.recipient, error)
    if results:
        with work.change(layout.settings, warn=log.debug) as db:
            fetch_entity.record_results(db, results)
    return {key: error for key, (_, error) in results.items()}


def run(layout: Layout, sleep: Callable[[float], None] = time.sleep) -> NoReturn:
    """A round now, then one every FETCHMAIL_DELAY seconds, forever."""
    delay = layout.settings.FETCHMAIL_DELAY
    log.info("fetched accounts: a round every %d seconds", delay)
    while True:
        try:
            fetch_round(layout)
        except Exception:
            # A store that cannot be read now (a migration under way) must not end the
            # loop for good; the next round tries again.
            log.exception("fetched accounts: the round failed; trying again in %d s", delay)
        sleep(delay)
