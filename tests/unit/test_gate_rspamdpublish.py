"""The gate gives Rspamd what it must know from the store: its index loads write the DKIM
keys into a real Redis, in the hash dkim_signing.conf names, for domains and their
alternatives (a Redis that was away or emptied gets them again), and the list of our
domains into the map Rspamd's anti-spoofing rules read."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import redis

from roost.core import dkim
from roost.core.address import domain_to_ascii
from roost.gate.index import Index
from roost.gate.rspamdpublish import (
    DIGEST,
    KEYS_HASH,
    RspamdPublisher,
    local_domains_path,
    selector_map_path,
)
from roost.store.db import Store
from roost.store.dkimkeys import DkimKeys
from tests.unit.test_cli_support import Stack, make_stack
from tests.unit.test_gate_support import redis_server

IDN = domain_to_ascii("bücher.example")


def ok(stack: Stack, *args: str, input: str | None = None) -> str:
    result = stack.roost(*args, input=input)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout


def held(socket: Path) -> dict[str, str]:
    client = redis.Redis(unix_socket_path=str(socket), decode_responses=True)
    try:
        return client.hgetall(KEYS_HASH)  # type: ignore[return-value]
    finally:
        client.close()


def key(stack: Stack, domain: str) -> str:
    return DkimKeys(stack.settings).path(domain).read_text()


def test_index_loads_write_the_keys_rspamd_signs_with(tmp_path: Path) -> None:
    stack = make_stack(tmp_path, extra="DKIM_SELECTOR=Sel2026\n")
    ok(stack, "domain", "example.com")
    ok(stack, "alternative", "add", "Alt.example", "example.com")
    ok(stack, "domain", "bücher.example")
    ok(stack, "domain", "unsigned.example")
    ok(stack, "dkim", "generate", "example.com")
    ok(stack, "dkim", "generate", "bücher.example")
    socket = tmp_path / "rspamd-redis" / "redis.sock"
    store = Store.from_settings(stack.settings)

    async def scenario() -> None:
        index = Index(store)
        publisher = RspamdPublisher(stack.settings, socket)
        index.after_load.append(publisher.loaded)
        try:
            with redis_server(socket):
                await index.load()
                main = key(stack, "example.com")
                # Alternatives sign under their own name with their domain's key;
                # the IDN domain under its punycode name; no key, no field.
                assert held(socket) == {
                    "sel2026.example.com": main,
                    "sel2026.alt.example": main,
                    f"sel2026.{IDN}": key(stack, IDN),
                }
                assert dkim.public_key(main)  # a usable key
                # Every domain and alternative is ours for Rspamd's anti-spoofing rules.
                domains = local_domains_path(stack.settings).read_text().split()
                assert domains == sorted(["alt.example", "example.com", IDN, "unsigned.example"])
                # A new key is there as soon as the index has loaded.
                ok(stack, "dkim", "generate", "example.com")
                await index.load()
                assert held(socket)["sel2026.alt.example"] == key(stack, "example.com") != main
                ok(stack, "domain-delete", "bücher.example")
                ok(stack, "alternative", "delete", "alt.example")
                await index.load()
                assert set(held(socket)) == {"sel2026.example.com"}
                domains = local_domains_path(stack.settings).read_text().split()
                assert domains == ["example.com", "unsigned.example"]
                ok(stack, "domain-delete", "example.com")
                await index.load()
                assert held(socket) == {}
                # Emptied behind the gate's back: written again by the watch.
                ok(stack, "dkim", "generate", "unsigned.example")
                await index.load()
                client = redis.Redis(unix_socket_path=str(socket))
                client.delete(KEYS_HASH, DIGEST)
                client.close()
                watch = asyncio.create_task(publisher.watch(interval=0.05))
                await asyncio.sleep(0.3)
                assert set(held(socket)) == {"sel2026.unsigned.example"}
                watch.cancel()
        finally:
            await publisher.close()

    try:
        asyncio.run(scenario())
    finally:
        store.dispose()


def test_a_redis_that_is_not_up_yet_gets_the_keys_when_it_is(tmp_path: Path) -> None:
    stack = make_stack(tmp_path)
    ok(stack, "domain", "example.com")
    ok(stack, "dkim", "generate", "example.com")
    socket = tmp_path / "rspamd-redis" / "redis.sock"
    store = Store.from_settings(stack.settings)

    async def scenario() -> None:
        index = Index(store)
        publisher = RspamdPublisher(stack.settings, socket)
        index.after_load.append(publisher.loaded)
        try:
            await index.load()  # no Redis: logged, the load itself succeeds
            assert "example.com" in index.directory.domains
            watch = asyncio.create_task(publisher.watch(interval=0.05))
            with redis_server(socket):
                for _ in range(100):
                    await asyncio.sleep(0.05)
                    if held(socket):
                        break
                assert held(socket) == {"dkim.example.com": key(stack, "example.com")}
            watch.cancel()
        finally:
            await publisher.close()

    try:
        asyncio.run(scenario())
    finally:
        store.dispose()


def test_a_rotation_puts_both_keys_in_redis_and_the_selector_in_rspamds_map(
    tmp_path: Path,
) -> None:
    stack = make_stack(tmp_path)
    ok(stack, "domain", "example.com")
    ok(stack, "alternative", "add", "alt.example", "example.com")
    ok(stack, "dkim", "generate", "example.com")
    socket = tmp_path / "rspamd-redis" / "redis.sock"
    selector_map = selector_map_path(stack.settings)
    keys = DkimKeys(stack.settings)
    store = Store.from_settings(stack.settings)

    async def scenario() -> None:
        index = Index(store)
        publisher = RspamdPublisher(stack.settings, socket)
        index.after_load.append(publisher.loaded)
        try:
            with redis_server(socket):
                await index.load()
                assert selector_map.read_text() == ""  # everyone signs with DKIM_SELECTOR
                keys.rotate("example.com", lambda selector, public: False)  # published
                await index.load()
                old, new = key(stack, "example.com"), keys.read("example.com", "dkim2")
                assert held(socket) == {
                    "dkim.example.com": old,
                    "dkim.alt.example": old,
                    "dkim2.example.com": new,
                    "dkim2.alt.example": new,
                }
                assert selector_map.read_text() == ""
                assert keys.rotate("example.com", lambda s, p: True).step == "switched"
                await index.load()
                assert selector_map.read_text() == "alt.example dkim2\nexample.com dkim2\n"
                assert stat.S_IMODE(selector_map.stat().st_mode) == 0o644
                assert keys.rotate("example.com", lambda s, p: True).step == "retired"
                # Not told: the watch reads the files again by itself.
                watch = asyncio.create_task(publisher.watch(interval=0.02, reread=2))
                await asyncio.sleep(0.3)
                watch.cancel()
                assert held(socket) == {"dkim2.example.com": new, "dkim2.alt.example": new}
        finally:
            await publisher.close()

    try:
        asyncio.run(scenario())
    finally:
        store.dispose()
