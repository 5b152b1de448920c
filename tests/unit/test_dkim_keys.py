"""DKIM keys: making and reading them (core.dkim), their files (store.dkimkeys), the CLI
(`roost dkim`, `roost dns`), config-import's `-generate-` and config-export's secret."""

from __future__ import annotations

import base64
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from dnslib import RCODE, RR, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from roost.core import dkim
from roost.core.address import domain_to_ascii
from roost.settings import SettingsError, load_settings
from roost.store.dkimkeys import DkimKeys
from tests.unit.test_cli_support import Stack, error_line, make_stack

IDN = "bücher.example"
IDN_ASCII = domain_to_ascii(IDN)


@pytest.fixture(scope="module")
def pem() -> str:
    return dkim.generate_key()


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    return make_stack(tmp_path)


def ok(stack: Stack, *args: str, input: str | None = None) -> str:
    result = stack.roost(*args, input=input)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout


def key_file(stack: Stack, domain: str) -> Path:
    return stack.root / "dkim" / f"{domain}.dkim.key"


# -- core --------------------------------------------------------------------------------------


def test_a_new_key_is_rsa_2048_pkcs8(pem: str) -> None:
    assert pem.startswith("-----BEGIN PRIVATE KEY-----\n")
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    der = base64.b64decode(dkim.public_key(pem))
    assert der == key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert dkim.record_text("AAA") == "v=DKIM1; k=rsa; p=AAA"


def test_a_key_given_by_a_person_is_rewrapped_and_checked(pem: str) -> None:
    body = "".join(pem.splitlines()[1:-1])
    # As Mailu's import: one line, a list of lines, no BEGIN/END lines, stray spaces.
    assert dkim.normalise_key(body) == pem
    assert dkim.normalise_key(pem.splitlines()) == pem
    assert dkim.normalise_key("  " + pem.replace("\n", " \n ")) == pem
    pkcs1 = (
        serialization.load_pem_private_key(pem.encode(), password=None)
        .private_bytes(  # type: ignore[union-attr]
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        .decode()
    )
    assert dkim.normalise_key(pkcs1) == pem


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "the key is empty"),
        ("not a key!", "not base64"),
        ("QUJD", "not a readable unencrypted private key"),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nQUJD\n-----END PRIVATE KEY-----",
            "different kinds",
        ),
    ],
)
def test_bad_keys_are_refused_with_the_reason(value: str, message: str) -> None:
    with pytest.raises(dkim.DkimKeyError, match=message):
        dkim.normalise_key(value)


def test_only_rsa_keys() -> None:
    # (cryptography makes no RSA key under 1024 bits any more, so that check stays untested)
    curve = ec.generate_private_key(ec.SECP256R1())
    text = curve.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    with pytest.raises(dkim.DkimKeyError, match="not an RSA"):
        dkim.normalise_key(text)


def test_settings_dkim_path_and_selector() -> None:
    base = {"DOMAIN": "example.com", "HOSTNAMES": "mail.example.com", "ROOT": "/srv/mail"}
    default = load_settings(env_file=None, environ=base)
    assert (default.DKIM_SELECTOR, default.DKIM_PATH) == ("dkim", "dkim/{domain}.{selector}.key")
    assert DkimKeys(default).path("xn--bcher-kva.example") == Path(
        "/srv/mail/dkim/xn--bcher-kva.example.dkim.key"
    )
    mailu = load_settings(
        env_file=None,
        environ={**base, "DKIM_PATH": "/dkim/{domain}.{selector}.key", "DKIM_SELECTOR": "S1"},
    )
    assert DkimKeys(mailu).path("example.com") == Path("/dkim/example.com.s1.key")
    for name, value, message in (
        ("DKIM_PATH", "/dkim/all.key", "must hold {domain}"),
        ("DKIM_PATH", "/dkim/{domain}.{user}.key", "only {domain} and {selector}"),
        ("DKIM_PATH", "/dkim/{domain", "not a valid template"),
        ("DKIM_SELECTOR", "bad_selector", "not a DKIM selector"),
        ("DKIM_SELECTOR", "", "not a DKIM selector"),
    ):
        with pytest.raises(SettingsError, match=message):
            load_settings(env_file=None, environ={**base, name: value})


# -- the CLI --------------------------------------------------------------------------------------


def test_generate_writes_a_private_file_and_shows_the_records(stack: Stack) -> None:
    ok(stack, "domain", IDN)
    ok(stack, "alternative", "add", "alt.example", IDN)
    out = ok(stack, "dkim", "generate", IDN).splitlines()
    path = key_file(stack, IDN_ASCII)
    mode = path.stat().st_mode
    # Readable by the directory's group (the web's, when it runs) and root, nobody else.
    assert stat.S_IMODE(mode) == 0o640 and path.stat().st_uid == 0
    assert path.stat().st_gid == path.parent.stat().st_gid
    public = dkim.public_key(path.read_text())
    assert out[0] == f"DKIM key generated for {IDN}; publish these records:"
    text = f"v=DKIM1; k=rsa; p={public}"
    chunks = " ".join(f'"{text[i : i + 250]}"' for i in range(0, len(text), 250))
    assert out[1:] == [
        f"dkim._domainkey.{IDN_ASCII}. 600 IN TXT {chunks}",
        f'_dmarc.{IDN_ASCII}. 600 IN TXT "v=DMARC1; p=reject; adkim=s; aspf=s"',
        f"dkim._domainkey.alt.example. 600 IN TXT {chunks}",
        '_dmarc.alt.example. 600 IN TXT "v=DMARC1; p=reject; adkim=s; aspf=s"',
    ]
    assert ok(stack, "dkim", "show", IDN).splitlines() == out[1:]
    # roost dns and its zone file now carry DKIM and DMARC, and no longer leave them out.
    dns = ok(stack, "dns", IDN).splitlines()
    left_out = [line for line in dns if line.startswith("Left out")]
    assert out[1] in dns and not [line for line in left_out if "DKIM" in line or "DMARC" in line]
    assert out[1] in ok(stack, "dns", IDN, "--zone").splitlines()
    # A second generate replaces the key.
    ok(stack, "dkim", "generate", IDN)
    assert dkim.public_key(path.read_text()) != public


def test_show_without_a_key_and_unknown_domains_fail_with_one_line(stack: Stack) -> None:
    ok(stack, "domain", "example.com")
    assert error_line(stack.roost("dkim", "show", "example.com")) == (
        "roost: error: example.com has no DKIM key: roost dkim generate example.com"
    )
    assert "does not exist" in error_line(stack.roost("dkim", "generate", "nowhere.example"))
    assert not (stack.root / "dkim" / "nowhere.example.dkim.key").exists()


def test_the_key_goes_with_its_domain(stack: Stack) -> None:
    ok(stack, "domain", "example.com")
    ok(stack, "dkim", "generate", "example.com")
    assert key_file(stack, "example.com").exists()
    ok(stack, "domain-delete", "example.com")
    assert not key_file(stack, "example.com").exists()


def test_key_files_are_read_as_written_or_normalised(stack: Stack, pem: str) -> None:
    keys = DkimKeys(stack.settings)
    keys.write("example.com", pem)
    assert keys.read("example.com") == pem
    # A key copied in by hand in another form (PKCS#1, no final newline) is used as well.
    traditional = (
        serialization.load_pem_private_key(pem.encode(), password=None)
        .private_bytes(  # type: ignore[union-attr]
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        .decode()
        .strip()
    )
    keys.path("example.com").write_text(traditional)
    assert keys.read("example.com") == pem
    assert keys.read("missing.example") is None


def test_a_broken_key_file_is_named(stack: Stack) -> None:
    ok(stack, "domain", "example.com")
    key_file(stack, "example.com").parent.mkdir(exist_ok=True)
    key_file(stack, "example.com").write_text("garbage")
    line = error_line(stack.roost("dkim", "show", "example.com"))
    assert line == (
        f"roost: error: DKIM key of 'example.com': {key_file(stack, 'example.com')}: "
        "not a readable unencrypted private key"
    )


# -- config-import and config-export -----------------------------------------------------------


def test_import_generate_and_export_hidden_unless_secrets(stack: Stack) -> None:
    out = ok(stack, "config-import", input=f"domain:\n  - name: {IDN}\n    dkim_key: -generate-\n")
    assert out.endswith("Created: domain(1)\n")
    pem = key_file(stack, IDN_ASCII).read_text()
    assert stat.S_IMODE(key_file(stack, IDN_ASCII).stat().st_mode) == 0o640
    hidden = ok(stack, "config-export")
    assert yaml.safe_load(hidden)["domain"] == [{"name": IDN, "dkim_key": "<hidden>"}]
    shown = ok(stack, "config-export", "--secrets")
    # Mailu's layout: the PEM as a literal block.
    assert "    dkim_key: |\n      -----BEGIN PRIVATE KEY-----\n" in shown
    assert yaml.safe_load(shown)["domain"][0]["dkim_key"] == pem
    # Both exports load back without a change, in both modes; <hidden> keeps the key.
    for document in (hidden, shown):
        for mode in ((), ("--update",)):
            assert ok(stack, "config-import", *mode, input=document).endswith("No changes.\n")
            assert key_file(stack, IDN_ASCII).read_text() == pem
    # Into an empty ROOT, the export with secrets restores the same key.
    other = make_stack(stack.root.parent / "other")
    ok(other, "config-import", input=shown)
    assert key_file(other, IDN_ASCII).read_text() == pem


def test_import_takes_a_pem_as_lines_and_counts_key_changes(stack: Stack, pem: str) -> None:
    body = pem.splitlines()[1:-1]
    document = yaml.safe_dump({"domain": [{"name": "example.com", "dkim_key": body}]})
    assert ok(stack, "config-import", input=document).endswith("Created: domain(1)\n")
    assert key_file(stack, "example.com").read_text() == pem
    again = ok(stack, "config-import", "-v", "-u", input=document)
    assert again.endswith("No changes.\n")
    new = ok(
        stack,
        "config-import",
        "-v",
        "-u",
        input="domain:\n  - name: example.com\n    dkim_key: -generate-\n",
    )
    assert new.splitlines()[0] == ("Modified domain: 'example.com' dkim_key: <hidden> -> <hidden>")
    assert new.endswith("Modified: domain(1)\n")
    assert key_file(stack, "example.com").read_text() != pem


def test_import_removes_keys_as_told_and_dry_run_touches_nothing(stack: Stack) -> None:
    generate = "domain:\n  - name: example.com\n    dkim_key: -generate-\n"
    ok(stack, "config-import", input=generate)
    path = key_file(stack, "example.com")
    pem = path.read_text()
    # A dry run neither writes a new key nor removes one.
    ok(stack, "config-import", "-n", input=generate)
    ok(stack, "config-import", "-n", input="domain:\n  - name: example.com\n")
    assert path.read_text() == pem
    # Update mode: an item without dkim_key keeps the key; -dkim_key: null removes it.
    ok(stack, "config-import", "-u", input="domain:\n  - name: example.com\n    comment: x\n")
    assert path.read_text() == pem
    out = ok(
        stack, "config-import", "-u", input="domain:\n  - name: example.com\n    -dkim_key: null\n"
    )
    assert out.endswith("Modified: domain(1)\n") and not path.exists()
    # Replace mode: the document is the whole truth; a domain without dkim_key has none.
    ok(stack, "config-import", input=generate)
    ok(stack, "config-import", input="domain:\n  - name: example.com\n")
    assert not path.exists()
    # Deleting the domain by import removes its key.
    ok(stack, "config-import", input=generate)
    ok(stack, "config-import", "-u", input="domain:\n  - -name: example.com\n")
    assert not path.exists()


def test_import_refuses_a_bad_key_with_its_path(stack: Stack) -> None:
    result = stack.roost(
        "config-import", input="domain:\n  - name: example.com\n    dkim_key: [1, 2]\n"
    )
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "[ValidationError] 1 errors occurred during input validation",
        "- domain[0].dkim_key : expected a PEM text or a list of its lines",
    ]
    result = stack.roost(
        "config-import", input="domain:\n  - name: example.com\n    dkim_key: QUJD\n"
    )
    assert "- domain[0].dkim_key : not a readable unencrypted private key" in result.stderr
    assert not (stack.root / "dkim" / "example.com.dkim.key").exists()


# -- the API --------------------------------------------------------------------------------------


def test_api_generates_keys_and_shows_mailus_dns_fields(tmp_path: Path) -> None:
    from tests.unit.test_web_api_support import api_stack

    stack, client = api_stack(tmp_path, extra="DMARC_RUA=reports\n")
    assert client.post("/domain", json={"name": IDN}).status_code == 200
    got = client.get(f"/domain/{IDN}").json()
    assert not {"dns_dkim", "dns_dmarc", "dns_dmarc_report"} & set(got)
    response = client.post(f"/domain/{IDN}/dkim")
    assert response.json() == {
        "code": 200,
        "message": f"DKIM/DMARC keys have been generated for domain {IDN}",
    }
    public = dkim.public_key(key_file(stack, IDN_ASCII).read_text())
    got = client.get(f"/domain/{IDN}").json()
    # One quoted string however long, as Mailu's API shows it.
    assert got["dns_dkim"] == (
        f'dkim._domainkey.{IDN_ASCII}. 600 IN TXT "v=DKIM1; k=rsa; p={public}"'
    )
    assert got["dns_dmarc"] == (
        f'_dmarc.{IDN_ASCII}. 600 IN TXT "v=DMARC1; p=reject; '
        'rua=mailto:reports@example.com; adkim=s; aspf=s"'
    )
    assert got["dns_dmarc_report"] == (
        f'{IDN_ASCII}._report._dmarc.example.com. 600 IN TXT "v=DMARC1;"'
    )
    assert client.post("/domain/nowhere.example/dkim").status_code == 404
    assert client.delete(f"/domain/{IDN}").status_code == 200
    assert not key_file(stack, IDN_ASCII).exists()


# -- rotation -----------------------------------------------------------------------------------


class _Zone(BaseResolver):  # type: ignore[misc]
    """Answers from the master-file lines a test adds; NXDOMAIN for anything else."""

    def __init__(self) -> None:
        self.records: list[RR] = []

    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        reply = request.reply()
        named = [r for r in self.records if r.rname == request.q.qname]
        if not named:
            reply.header.rcode = RCODE.NXDOMAIN
        for record in named:
            if record.rtype == request.q.qtype:
                reply.add_answer(record)
        return reply


@pytest.fixture
def zone() -> Iterator[tuple[_Zone, str]]:
    resolver = _Zone()
    server = DNSServer(resolver, address="127.0.0.1", port=0, logger=DNSLogger("-request,-reply"))
    server.start_thread()
    try:
        yield resolver, f"127.0.0.1:{server.server.server_address[1]}"
    finally:
        server.stop()
        server.server.server_close()


def test_rotation_publishes_switches_once_live_and_retires(
    stack: Stack, zone: tuple[_Zone, str]
) -> None:
    resolver, address = zone
    ok(stack, "domain", "example.com")
    ok(stack, "alternative", "add", "alt.example", "example.com")
    ok(stack, "dkim", "generate", "example.com")
    keys = DkimKeys(stack.settings)
    old = keys.public("example.com")
    rotate = ("dkim", "rotate", "example.com", "--resolver", address)
    # 1: a second key under dkim2, published beside the first; mail still signed with dkim.
    out = ok(stack, *rotate).splitlines()
    assert out[0].startswith("example.com: a new key under the selector dkim2; mail is still")
    new = keys.public("example.com", "dkim2")
    assert new is not None and new != old and keys.active("example.com") == "dkim"
    assert [line.split(" 600 ")[0] for line in out[1:]] == [
        "dkim2._domainkey.example.com.",
        "dkim2._domainkey.alt.example.",
    ]
    shown = ok(stack, "dkim", "show", "example.com")
    assert shown.index("dkim._domainkey.example.com.") < shown.index("dkim2._domainkey.example")
    # 2: not in DNS yet, nothing changes (exit status 1); once it is, dkim2 signs.
    waiting = stack.roost(*rotate)
    assert waiting.exit_code == 1 and "is not in DNS yet" in waiting.stdout
    assert keys.active("example.com") == "dkim"
    resolver.records += RR.fromZone("\n".join(out[1:]))
    assert "signing with dkim2 now" in ok(stack, *rotate)
    assert keys.active("example.com") == "dkim2"
    assert [s for s, _ in keys.published("example.com")] == ["dkim2", "dkim"]
    assert keys.public("example.com") == new
    # 3: the old key is retired; its records can go.
    retired = ok(stack, *rotate).splitlines()
    assert retired[1:] == ["dkim._domainkey.example.com. TXT", "dkim._domainkey.alt.example. TXT"]
    assert keys.published("example.com") == [("dkim2", new)]
    assert not keys.path("example.com", "dkim").exists()
    # The next rotation takes turns back to dkim; deleting the domain removes everything.
    assert "under the selector dkim;" in ok(stack, *rotate).splitlines()[0]
    ok(stack, "domain-delete", "example.com")
    assert sorted(p.name for p in (stack.root / "dkim").iterdir()) == []


def test_rotation_needs_a_key_and_a_selector_in_dkim_path(tmp_path: Path) -> None:
    stack = make_stack(tmp_path, extra="DKIM_PATH=keys/{domain}.pem\n")
    ok(stack, "domain", "example.com")
    assert error_line(stack.roost("dkim", "rotate", "example.com")) == (
        "roost: error: DKIM_PATH 'keys/{domain}.pem' does not hold {selector}, so a "
        "domain cannot have two keys to rotate"
    )
    ok(stack, "dkim", "generate", "example.com")
    assert (stack.root / "keys" / "example.com.pem").exists()
    other = make_stack(tmp_path / "other")
    ok(other, "domain", "example.com")
    assert error_line(other.roost("dkim", "rotate", "example.com")) == (
        "roost: error: example.com has no DKIM key: roost dkim generate example.com"
    )
