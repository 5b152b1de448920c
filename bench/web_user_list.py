"""Benchmark: the admin pages' user list with 10,000 users and 10,000 aliases in one domain.

Builds a store with 10,000 users and 10,000 aliases in one domain (the worst case for a
domain's list: every count, search and page reads the whole domain), builds the web
application (``roost.web.app.create_app``) with an in-memory session store and a global
administrator's session placed in it (so no gate is needed: the sign-in is not what is
measured), and calls it in-process over httpx's ASGI transport: the whole application path
(session, account and rank check, store read, template) without a network.

Measured: ``/admin/user/list/<domain>`` at its first, a middle and its last page, a search
that matches 111 users and one that matches none, the list of a one-user domain (what
any signed-in page costs), next to a trivial page added to the same
application (a constant text answer behind the same middleware: session, security
headers) in the same run: the floor, so the ratio says what the list itself costs on this
machine. Prints p50/p95 of each and the ratios.

Target: each list page answers with p95 under 100 ms.

    .venv/bin/python bench/web_user_list.py [--requests 60]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from fastapi.responses import PlainTextResponse
from sqlalchemy import insert

from roost.core.passwords import hash_password
from roost.settings import load_settings
from roost.store import models
from roost.store.db import Store
from roost.web.app import create_app
from roost.web.sessions import MemorySessionStore, cookie_name, password_fingerprint

DOMAIN = "big.test"
USERS = 10_000
ALIASES = 10_000
ADMIN = f"admin@{DOMAIN}"
#: A domain with one user: the signed-in page's fixed cost without the big list.
SMALL = "small.test"
TARGET = 0.100


def populate(store: Store) -> str:
    """The users, aliases and the administrator; returns the administrator's hash."""
    rng = random.Random(42)
    password = hash_password("bench-password")
    users = [f"user{n}@{DOMAIN}" for n in range(USERS - 1)] + [ADMIN]
    with store.session() as session:
        session.execute(insert(models.Domain), [{"name": DOMAIN}, {"name": SMALL}])
        session.execute(
            insert(models.User),
            [
                {
                    "email": email,
                    "localpart": email.partition("@")[0],
                    "domain_name": DOMAIN,
                    "password": password,
                    "displayed_name": f"Person {n}",
                    "comment": "",
                    "global_admin": email == ADMIN,
                }
                for n, email in enumerate(users)
            ]
            + [
                {
                    "email": f"only@{SMALL}",
                    "localpart": "only",
                    "domain_name": SMALL,
                    "password": password,
                    "comment": "",
                }
            ],
        )
        session.execute(
            insert(models.Alias),
            [
                {
                    "email": f"alias{n}@{DOMAIN}",
                    "localpart": f"alias{n}",
                    "domain_name": DOMAIN,
                    "destination": [users[rng.randrange(USERS)]],
                }
                for n in range(ALIASES)
            ],
        )
    return password


async def timed(client: httpx.AsyncClient, path: str, count: int, expect: str) -> list[float]:
    """``count`` timed GETs; each page must hold ``expect`` (``!text``: must not hold it)."""
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        response = await client.get(path)
        samples.append(time.perf_counter() - start)
        absent = expect.startswith("!")
        if response.status_code != 200 or (expect.lstrip("!") in response.text) is absent:
            raise SystemExit(f"GET {path}: {response.status_code}, {expect!r} fails on the page")
    return samples


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1]


def line(name: str, samples: list[float]) -> str:
    return (
        f"{name:<40} p50 {statistics.median(samples) * 1000:7.2f} ms"
        f"   p95 {p95(samples) * 1000:7.2f} ms"
    )


async def run(requests: int, root: Path) -> int:
    env = root / "mailu.env"
    env.write_text(
        f"ROOT={root / 'root'}\nDOMAIN={DOMAIN}\nHOSTNAMES=mail.{DOMAIN}\n"
        "SECRET_KEY=bench-secret-0123456789abcdef\n"
    )
    settings = load_settings(env_file=env, environ={})
    store = Store.from_settings(settings)
    try:
        store.upgrade()
        admin_hash = populate(store)
    finally:
        store.dispose()

    sessions = MemorySessionStore()
    app = create_app(settings, sessions=sessions, gate=object())

    async def trivial() -> PlainTextResponse:
        return PlainTextResponse("ok")

    app.add_api_route("/bench/trivial", trivial)
    sid = secrets.token_urlsafe(32)
    data = {
        "user": ADMIN,
        "created": time.time(),
        "csrf": secrets.token_urlsafe(32),
        "pw": password_fingerprint(settings, admin_hash),
    }
    await sessions.save(sid, data, 3600)
    prefix = f"{settings.WEB_ADMIN}/user/list/{DOMAIN}"
    cases = [
        ("list of a one-user domain", f"{settings.WEB_ADMIN}/user/list/{SMALL}", "only@"),
        ("list, page 1", prefix, "user1@"),
        ("list, page 100 (of 200)", f"{prefix}?page=100", "@big.test"),
        ("list, page 200 (the last)", f"{prefix}?page=200", "user999"),
        ("search 'user77' (111 users), page 1", f"{prefix}?q=user77", "user7700@"),
        ("search that matches nobody", f"{prefix}?q=nobody-here", "!user1@"),
    ]
    transport = httpx.ASGITransport(app=app, client=("198.51.100.1", 5555))
    async with httpx.AsyncClient(
        transport=transport,
        base_url=f"https://mail.{DOMAIN}",
        cookies={cookie_name(settings): sid},
    ) as client:
        for _, path, expect in cases:
            await timed(client, path, 2, expect)  # warm up (templates, store)
        floor = await timed(client, "/bench/trivial", requests, "ok")
        results = [
            (name, await timed(client, path, requests, expect)) for name, path, expect in cases
        ]
    print(
        f"store: {USERS} users, {ALIASES} aliases in one domain; {requests} requests each; "
        "in process (httpx ASGI transport), SQLite"
    )
    print(line("trivial page, same app (floor)", floor))
    worst = 0.0
    for name, samples in results:
        print(line(name, samples) + f"   ratio p95/floor {p95(samples) / p95(floor):5.1f}x")
        worst = max(worst, p95(samples))
    verdict = "meets" if worst < TARGET else "MISSES"
    print(f"slowest list p95 {worst * 1000:.1f} ms {verdict} the {TARGET * 1000:.0f} ms target")
    return 0 if worst < TARGET else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="roost-bench-web-"))
    try:
        return asyncio.run(run(args.requests, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
