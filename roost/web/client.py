"""The browser's address, port and scheme, as nginx saw them.

In a stack the web application listens only on a Unix socket that root and nginx's
workers alone can open (``ROOT/run/web``, ``0750 _roost-web:www-data``), and nginx sets
``X-Real-IP``, ``X-Real-Port``, ``X-Forwarded-By``, ``X-Forwarded-Port`` and
``X-Forwarded-Proto`` itself, replacing whatever the browser sent. Behind a proxy of
REAL_IP_FROM, ``X-Real-IP`` is the client that proxy names and ``X-Forwarded-By`` the
proxy, the peer nginx accepted; otherwise both are that peer. So these headers are
believed only when the request came over a Unix socket (uvicorn then reports no TCP peer);
over TCP (a test client, or an administrator's experiment) the peer address is the client
and the headers are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from roost.core.ipnet import parse_ip

__all__ = ["ClientInfo", "client_info"]


@dataclass(frozen=True, slots=True)
class ClientInfo:
    ip: str
    port: int
    server_port: int
    https: bool
    #: the peer nginx accepted the connection from (a proxy of REAL_IP_FROM, or ``ip``)
    peer: str


def _int(text: str | None, default: int) -> int:
    if text and text.isascii() and text.isdigit() and int(text) <= 65535:
        return int(text)
    return default


def client_info(request: Request) -> ClientInfo:
    settings = request.app.state.settings
    default_port = 443 if settings.tls else 80
    peer = request.scope.get("client")
    if peer is None or not peer[0]:
        headers = request.headers
        addr = parse_ip(headers.get("x-real-ip", ""))
        ip = str(addr) if addr is not None else "0.0.0.0"
        by = parse_ip(headers.get("x-forwarded-by", ""))
        return ClientInfo(
            ip=ip,
            peer=str(by) if by is not None else ip,
            port=_int(headers.get("x-real-port"), 0),
            server_port=_int(headers.get("x-forwarded-port"), default_port),
            https=headers.get("x-forwarded-proto", "") == "https",
        )
    addr = parse_ip(str(peer[0]))
    ip = str(addr) if addr is not None else "0.0.0.0"
    return ClientInfo(
        ip=ip,
        peer=ip,
        port=_int(str(peer[1]), 0),
        server_port=default_port,
        https=request.url.scheme == "https",
    )
