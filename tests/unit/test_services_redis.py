"""Redis: rendered into a temporary ROOT, started as the runner starts it, asked over its socket."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from collections.abc import Iterator

import pytest
import redis
from test_services_postfix_support import make_settings, roost_root, wait_for

from roost.layout import Layout
from roost.services.redis import RedisService, RspamdRedisService

pytestmark = pytest.mark.e2e


@pytest.fixture()
def service() -> Iterator[RedisService]:
    with roost_root() as root:
        yield RedisService(Layout(make_settings(root, "127.0.5.40", TLS_FLAVOR="notls")))


def test_redis_answers_on_its_socket_only(service: RedisService) -> None:
    service.render()
    layout = service.layout
    process = subprocess.Popen(service.command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        socket_path = service.readiness().unix_sockets[0]
        assert socket_path == layout.redis_socket
        wait_for(lambda: socket_path.exists() or process.poll() is not None, 15, "redis socket")
        assert process.poll() is None
        client = redis.Redis(unix_socket_path=str(socket_path))
        assert client.ping() is True
        assert client.config_get("port") == {"port": "0"}  # no TCP listener
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}
        assert client.config_get("dir") == {"dir": str(layout.redis_data)}
        # The group is redis's own, which the web's process alone joins (its --groups).
        assert stat.S_IMODE(socket_path.stat().st_mode) == 0o770
        assert socket_path.group() == "redis"
        owner = subprocess.run(
            ["ps", "-o", "user=", "-p", str(process.pid)], capture_output=True, text=True
        ).stdout.strip()
        assert owner == "redis"
        client.set("roost-test", "1")
        client.close()
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=15)[0].decode(errors="replace")
    assert process.returncode == 0, output
    assert "Redis is starting" in output  # logfile "" = the runner's stdout
    assert os.listdir(layout.redis_data) == []  # nothing persisted


def test_render_prepares_directories_for_the_redis_user(service: RedisService) -> None:
    service.render()
    for directory in (service.layout.redis_data, service.layout.redis_socket.parent):
        assert directory.owner() == "redis"
    text = service.conf.read_text()
    assert f"unixsocket {service.layout.redis_socket}\n" in text
    assert "daemonize no\n" in text
    assert 'logfile ""\n' in text


def test_runner_interface(service: RedisService) -> None:
    assert service.command()[-2:] == ["redis-server", str(service.conf)]
    assert service.command()[0] == "setpriv"
    assert list(service.after) == []
    assert service.stop_command() is None
    assert service.reload_command() is None  # nothing to reload: no certificate, no files
    assert service.reload_on() == frozenset()
    assert service.enabled(service.layout.settings)


def test_rspamds_redis_is_its_own_keeps_a_snapshot_and_refuses_others() -> None:
    with roost_root() as root:
        rspamd_redis = RspamdRedisService(Layout(make_settings(root, "127.0.5.41")))
        rspamd_redis.render()
        socket_path = rspamd_redis.socket
        assert socket_path == rspamd_redis.layout.rspamd_redis_socket
        assert socket_path != rspamd_redis.layout.redis_socket
        process = subprocess.Popen(
            rspamd_redis.command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            wait_for(lambda: socket_path.exists() or process.poll() is not None, 15, "socket")
            assert process.poll() is None
            owner = subprocess.run(
                ["ps", "-o", "user=", "-p", str(process.pid)], capture_output=True, text=True
            ).stdout.strip()
            assert owner == "_rspamd"
            client = redis.Redis(unix_socket_path=str(socket_path))
            assert client.config_get("save") != {"save": ""}
            client.set("BAYES_TEST", "1")
            client.close()
            # Rspamd's user may connect; the gate's Redis user and anyone else may not.
            script = f"import socket; socket.socket(socket.AF_UNIX).connect({str(socket_path)!r})"
            for user, allowed in (("_rspamd", True), ("redis", False), ("nobody", False)):
                probe = subprocess.run(
                    ["runuser", "-u", user, "--", "python3", "-c", script],
                    capture_output=True,
                    check=False,
                )
                assert (probe.returncode == 0) is allowed, (user, probe.stderr)
        finally:
            process.send_signal(signal.SIGTERM)
            output = process.communicate(timeout=15)[0].decode(errors="replace")
        assert process.returncode == 0, output
        # What Rspamd learnt is on disk for the next start.
        assert (rspamd_redis.data / "dump.rdb").exists()
