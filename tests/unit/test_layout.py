"""Where a stack's internal endpoints live: under ROOT, or on a loopback address of its own."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from roost.layout import Layout, derived_loopback
from tests.unit.test_gate_support import make_settings


def test_two_stacks_on_public_addresses_get_different_internal_endpoints(tmp_path: Path) -> None:
    one = Layout(make_settings(tmp_path / "one", "192.0.2.10"))
    two = Layout(make_settings(tmp_path / "two", "0.0.0.0"))
    assert one.internal_address != two.internal_address
    for layout in (one, two):
        address = ipaddress.ip_address(layout.internal_address)
        # Never a public address, never the 127.0.0.1 every stack used to share.
        assert address.is_loopback and address not in ipaddress.ip_network("127.0.0.0/16")
        assert layout.gate_http_url == f"http://{layout.internal_address}:10080"
        for path in (
            layout.gate_http_socket,
            layout.gate_http_secret,
            layout.gate_socketmap,
            layout.gate_dict,
            layout.gate_control,
        ):
            assert path.is_relative_to(layout.root)
        assert layout.gate_auth_http == f"unix:{layout.gate_http_socket}:/auth/email"
    assert one.gate_http_socket != two.gate_http_socket
    # The same ROOT keeps its address across restarts (and settings changes).
    again = Layout(make_settings(tmp_path / "one", "198.51.100.7"))
    assert again.internal_address == one.internal_address


def test_a_loopback_bind_keeps_its_internal_hops_on_that_address(tmp_path: Path) -> None:
    assert Layout(make_settings(tmp_path, "127.0.9.4")).internal_address == "127.0.9.4"


def test_derived_addresses_spread_over_their_range() -> None:
    addresses = {derived_loopback(Path(f"/srv/roost-{n}")) for n in range(2000)}
    assert len(addresses) == 2000
    assert all(ipaddress.ip_address(a) in ipaddress.ip_network("127.224.0.0/11") for a in addresses)
    assert not any(a.endswith(".0") or a.startswith("127.255.") for a in addresses)
