"""config-export / config-import: Mailu's format, round trips, replace, update, dry run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from roost.core.address import domain_to_ascii
from roost.core.passwords import verify_password, verify_token
from roost.store.models import Alias, Alternative, Domain, Fetch, Relay, Token, User
from tests.unit.test_cli_support import Stack, make_stack

ALT = domain_to_ascii("Ält.example")

# Every field of every section holds a value other than its default.
EVERYTHING = """\
domain:
  - name: example.com
    alternatives: [alt.example, Ält.example]
    anonmail_enabled: true
    comment: main domain
    max_aliases: 10
    max_quota_bytes: 5000000000
    max_users: 20
    signup_enabled: true
  - name: Bücher.example
user:
  - email: Joe@Example.com
    allow_spoofing: true
    change_pw_next_login: true
    comment: the boss
    displayed_name: Joe Bloggs
    enable_imap: false
    enable_pop: false
    enabled: false
    fetches:
      - id: 4
        comment: old mail
        error: login failed
        folders: [INBOX, Sent]
        host: imap.example.net
        invisible: true
        keep: true
        last_check: '2024-05-06T07:08:09'
        password: fetch secret
        port: 993
        protocol: imap
        scan: true
        tls: true
        username: joe
    forward_destination: [joe@example.org, ann@bücher.example]
    forward_enabled: true
    forward_keep: false
    global_admin: true
    manager_of: [example.com, bücher.example]
    password: '{BLF-CRYPT}$2b$12$abcdefghijklmnopqrstuuJ0yk1nZ2hQ2q0n0Y8m7iF0P0pE9Q2kO'
    quota_bytes: 123456
    reply_body: |
      Away
      until Monday
    reply_enabled: true
    reply_enddate: '2030-01-31'
    reply_startdate: 2030-01-01
    reply_subject: Out of office
    spam_enabled: false
    spam_mark_as_read: false
    spam_threshold: 95
    tokens:
      - id: 7
        comment: phone
        ip: [192.0.2.0/24, '2001:db8::/32']
        password: $pbkdf2-sha256$1$c2FsdHNhbHRzYWx0$2Zp5fGgXkFh4
  - email: ann@bücher.example
    password: $6$rounds=5000$salt$hash
alias:
  - email: '%@example.com'
    comment: catch-all
    destination: [joe@example.com]
    disabled: true
    hostname: anon.example.com
    owner_email: joe@example.com
    wildcard: true
  - email: team@bücher.example
    destination: joe@example.com,ann@bücher.example
relay:
  - name: relay.example
    comment: backup MX
    smtp: mx:smtp.example.net:2525
"""


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    return make_stack(tmp_path)


def ok(stack: Stack, *args: str, input: str | None = None) -> str:
    result = stack.roost(*args, input=input)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout


def failed(stack: Stack, *args: str, input: str | None = None) -> list[str]:
    result = stack.roost(*args, input=input)
    assert result.exit_code == 2, result.stdout
    assert result.stdout == ""
    return result.stderr.splitlines()


# -- export ----------------------------------------------------------------------------------


def test_export_layout_is_mailus(stack: Stack) -> None:
    ok(stack, "user", "joe", "example.com", "pw")
    ok(stack, "alternative", "add", "alt.example", "example.com")
    ok(stack, "relay", "add", "relay.example")
    with stack.session() as session:
        password = session.get(User, "joe@example.com").password  # type: ignore[union-attr]
    assert ok(stack, "config-export") == (
        "domain:\n"
        "  - name: example.com\n"
        "    alternatives:\n"
        "      - alt.example\n"
        "\n"
        "user:\n"
        "  - email: joe@example.com\n"
        "    change_pw_next_login: true\n"
        f"    password: {password}\n"
        "\n"
        "alias: []\n"
        "\n"
        "relay:\n"
        "  - name: relay.example\n"
    )


def test_export_full_and_json(stack: Stack) -> None:
    ok(stack, "domain", "example.com")
    assert json.loads(ok(stack, "config-export", "--full", "--json")) == {
        "domain": [
            {
                "name": "example.com",
                "alternatives": [],
                "anonmail_enabled": False,
                "comment": "",
                "dkim_key": "",
                "max_aliases": -1,
                "max_quota_bytes": 0,
                "max_users": -1,
                "signup_enabled": False,
                "totp_required": False,
            }
        ],
        "user": [],
        "alias": [],
        "relay": [],
    }
    assert ok(stack, "config-export", "-j") == (
        '{"domain":[{"name":"example.com"}],"user":[],"alias":[],"relay":[]}\n'
    )


def test_export_filters(stack: Stack) -> None:
    ok(stack, "config-import", input=EVERYTHING)
    assert json.loads(ok(stack, "config-export", "-j", "user.spam_threshold")) == {
        "user": [
            {"email": "ann@bücher.example", "spam_threshold": 80},
            {"email": "joe@example.com", "spam_threshold": 95},
        ]
    }
    assert ok(stack, "config-export", "domain.name", "relay") == (
        "domain:\n"
        "  - name: example.com\n"
        "  - name: bücher.example\n"
        "\n"
        "relay:\n"
        "  - name: relay.example\n"
        "    comment: backup MX\n"
        "    smtp: mx:smtp.example.net:2525\n"
    )
    assert failed(stack, "config-export", "users") == [
        "roost: error: filter 'users': unknown section 'users' (accepts domain, user, alias, relay)"
    ]


def test_secrets_are_hidden_unless_asked(stack: Stack) -> None:
    ok(stack, "config-import", input=EVERYTHING)
    (joe,) = [
        u for u in yaml.safe_load(ok(stack, "config-export"))["user"] if u.get("global_admin")
    ]
    assert joe["fetches"][0]["password"] == "<hidden>"
    assert "last_check" not in joe["fetches"][0]  # run-time state: only with --full
    assert joe["password"].startswith("$2b$12$")  # password hashes are always exported
    (joe,) = [
        u
        for u in yaml.safe_load(ok(stack, "config-export", "-s", "-f"))["user"]
        if u["global_admin"]
    ]
    assert joe["fetches"][0]["password"] == "fetch secret"
    assert joe["fetches"][0]["last_check"] == "2024-05-06T07:08:09"


# -- round trips -----------------------------------------------------------------------------


def test_everything_is_stored_as_given(stack: Stack) -> None:
    assert ok(stack, "config-import", input=EVERYTHING) == (
        "Committing changes.\n"
        "Created: domain(2), alternative(2), user(2), token(1), fetch(1), alias(2), relay(1)\n"
    )
    with stack.session() as session:
        assert session.get(Alternative, ALT) is not None
        joe = session.get(User, "joe@example.com")
        assert joe is not None
        assert joe.password.startswith("$2b$12$")  # {BLF-CRYPT} stripped
        assert joe.forward_destination == ["ann@xn--bcher-kva.example", "joe@example.org"]
        assert sorted(d.name for d in joe.manager_of) == ["example.com", "xn--bcher-kva.example"]
        assert joe.reply_body == "Away\nuntil Monday\n"
        (token,) = joe.tokens
        assert (token.id, token.ip) == (7, ["192.0.2.0/24", "2001:db8::/32"])
        (fetch,) = joe.fetches
        assert (fetch.id, fetch.folders, fetch.port) == (4, ["INBOX", "Sent"], 993)
        alias = session.get(Alias, "%@example.com")
        assert alias is not None and alias.owner_email == "joe@example.com" and alias.wildcard
        team = session.get(Alias, "team@xn--bcher-kva.example")
        assert team is not None
        assert team.destination == ["ann@xn--bcher-kva.example", "joe@example.com"]


@pytest.mark.parametrize(
    "options", [(), ("--secrets",), ("--secrets", "--full"), ("--secrets", "--json")]
)
def test_export_imports_into_an_empty_store_identically(
    stack: Stack, tmp_path: Path, options: tuple[str, ...]
) -> None:
    ok(stack, "config-import", input=EVERYTHING)
    exported = ok(stack, "config-export", *options)
    if "--secrets" not in options:
        # A hidden fetch password cannot be imported: that is what --secrets is for.
        assert failed(make_stack(tmp_path / "b"), "config-import", input=exported) == [
            "[ValidationError] 1 errors occurred during input validation",
            "- user[1].fetches[0] : a new fetch needs password "
            "(export with --secrets to include passwords)",
        ]
        return
    empty = make_stack(tmp_path / "b")
    ok(empty, "config-import", input=exported)
    assert ok(empty, "config-export", *options) == exported
    # ...and importing it again, in either mode, changes nothing.
    assert ok(empty, "config-import", input=exported).endswith("No changes.\n")
    assert ok(empty, "config-import", "-u", input=exported).endswith("No changes.\n")


# -- replace, update, dry run ----------------------------------------------------------------


def test_hidden_secrets_reimport_into_the_same_store(stack: Stack) -> None:
    ok(stack, "config-import", input=EVERYTHING)
    exported = ok(stack, "config-export")
    assert "password: <hidden>" in exported
    # Only the fetch's run-time state, exported with --full alone, is lost.
    assert ok(stack, "config-import", "-v", input=exported).splitlines() == [
        "Modified fetch: 'joe@example.com #4' last_check: "
        "datetime.datetime(2024, 5, 6, 7, 8, 9) -> None",
        "Modified fetch: 'joe@example.com #4' error: 'login failed' -> None",
        "Committing changes.",
        "Modified: fetch(1)",
    ]
    with stack.session() as session:
        assert session.scalars(select(Fetch)).one().password == "fetch secret"


def test_replace_mode_replaces_only_the_sections_given(stack: Stack) -> None:
    ok(stack, "config-import", input=EVERYTHING)
    output = ok(stack, "config-import", input="relay:\n  - name: other.example\n")
    assert output == "Committing changes.\nCreated: relay(1) / Deleted: relay(1)\n"
    with stack.session() as session:
        assert [r.name for r in session.scalars(select(Relay))] == ["other.example"]
        assert len(session.scalars(select(User)).all()) == 2
    # A user section replaces users, with their tokens, fetches and owned aliases.
    output = ok(
        stack, "config-import", "-v", input="user:\n  - email: new@example.com\n    password: h\n"
    )
    assert output.splitlines()[-1] == (
        "Created: user(1) / Deleted: user(2), token(1), fetch(1), alias(1)"
    )
    assert "Deleted alias: '%@example.com'" in output.splitlines()


def test_update_mode_merges(stack: Stack) -> None:
    ok(stack, "config-import", input=EVERYTHING)
    change = (
        "user:\n"
        "  - email: joe@example.com\n"
        "    spam_threshold: 50\n"
        "relay:\n"
        "  - name: second.example\n"
    )
    output = ok(stack, "config-import", "--update", "-v", input=change)
    assert output == (
        "Modified user: 'joe@example.com' spam_threshold: 95 -> 50\n"
        "Created relay: 'second.example'\n"
        "Committing changes.\n"
        "Created: relay(1) / Modified: user(1)\n"
    )
    with stack.session() as session:
        joe = session.get(User, "joe@example.com")
        assert joe is not None and joe.displayed_name == "Joe Bloggs" and len(joe.tokens) == 1
        assert session.get(Relay, "relay.example") is not None


def test_dry_run_changes_nothing(stack: Stack) -> None:
    before = ok(stack, "config-export", "-s")
    output = ok(stack, "config-import", "--dry-run", input=EVERYTHING)
    assert output.splitlines()[0] == "Dry run. Not committing changes."
    assert output.splitlines()[1].startswith("Created: domain(2), alternative(2), user(2)")
    assert ok(stack, "config-export", "-s") == before
    ok(stack, "config-import", input=EVERYTHING)
    exported = ok(stack, "config-export", "-s")
    output = ok(stack, "config-import", "-n", "-u", input="relay:\n  - -name: null\n")
    assert output == "Dry run. Not committing changes.\nDeleted: relay(1)\n"
    assert ok(stack, "config-export", "-s") == exported


def test_update_deletion_notation(stack: Stack) -> None:
    ok(stack, "config-import", input=EVERYTHING)
    ok(stack, "relay", "add", "two.example")
    change = """\
domain:
  - name: example.com
    alternatives: [-alt.example, new-alt.example]
    -comment: null
user:
  - email: joe@example.com
    forward_destination: [-prune-, fresh@example.org]
    manager_of: [-bücher.example]
    -spam_threshold: null
    tokens:
      - -id: 7
    fetches:
      - -id: null
alias:
  - email: team@bücher.example
    destination: [-joe@example.com]
  - -email: null
relay:
  - -name: relay.example
"""
    output = ok(stack, "config-import", "-u", input=change)
    assert output.splitlines()[-1] == (
        "Created: alternative(1) / Modified: domain(1), user(1), alias(1) / "
        "Deleted: alternative(1), token(1), fetch(1), alias(1), relay(1)"
    )
    with stack.session() as session:
        domain = session.get(Domain, "example.com")
        assert domain is not None and domain.comment == ""
        assert sorted(a.name for a in domain.alternatives) == [
            "new-alt.example",
            ALT,
        ]
        joe = session.get(User, "joe@example.com")
        assert joe is not None
        assert joe.forward_destination == ["fresh@example.org"]
        assert [d.name for d in joe.manager_of] == ["example.com"]
        assert joe.spam_threshold == 80
        assert (joe.tokens, joe.fetches) == ([], [])
        assert [a.email for a in session.scalars(select(Alias))] == ["team@xn--bcher-kva.example"]
        team = session.get(Alias, "team@xn--bcher-kva.example")
        assert team is not None and team.destination == ["ann@xn--bcher-kva.example"]
        assert [r.name for r in session.scalars(select(Relay))] == ["two.example"]


def test_hash_password_and_stable_reimport(stack: Stack) -> None:
    document = """\
domain:
  - name: example.com
user:
  - email: joe@example.com
    password: plain secret
    hash_password: true
    tokens:
      - comment: laptop
        password: 0123456789abcdef0123456789abcdef
        hash_password: true
"""
    ok(stack, "config-import", input=document)
    with stack.session() as session:
        joe = session.get(User, "joe@example.com")
        assert joe is not None and verify_password(joe.password, "plain secret")[0]
        (token,) = joe.tokens
        assert verify_token(token.password, "0123456789abcdef0123456789abcdef")[0]
    assert ok(stack, "config-import", "-u", input=document).endswith("No changes.\n")
    assert ok(stack, "config-import", input=document).endswith("No changes.\n")


def test_mailu_documentation_template_imports(stack: Stack) -> None:
    """The complete template from Mailu's CLI documentation, values as printed there."""
    template = """\
domain:
  - name: example.com
    alternatives:
      - alternative.tld
    comment: ''
    dkim_key: ''
    max_aliases: -1
    max_quota_bytes: 0
    max_users: -1
    signup_enabled: false

user:
  - email: postmaster@example.com
    comment: ''
    displayed_name: 'Postmaster'
    enable_imap: true
    enable_pop: false
    enabled: true
    fetches:
      - id: 1
        comment: 'test fetch'
        error: null
        host: other.example.com
        keep: true
        last_check: '2020-12-29T17:09:48.200179'
        password: 'secret'
        hash_password: true
        port: 993
        protocol: imap
        tls: true
        username: fetch-user
    forward_destination:
      - address@remote.example.com
    forward_enabled: true
    forward_keep: true
    global_admin: true
    manager_of:
      - example.com
    password: '$2b$12$...'
    hash_password: true
    quota_bytes: 1000000000
    reply_body: ''
    reply_enabled: false
    reply_enddate: '2999-12-31'
    reply_startdate: '1900-01-01'
    reply_subject: ''
    spam_enabled: true
    spam_mark_as_read: true
    spam_threshold: 80
    tokens:
      - id: 1
        comment: email-client
        ip: 192.168.1.1
        password: '$5$rounds=1$...'

alias:
  - email: email@example.com
    comment: ''
    destination:
      - address@example.com
    wildcard: false

relay:
  - name: relay.example.com
    comment: ''
    smtp: mx.example.com
"""
    assert ok(stack, "config-import", input=template) == (
        "Committing changes.\n"
        "Created: domain(1), alternative(1), user(1), token(1), fetch(1), alias(1), relay(1)\n"
    )
    with stack.session() as session:
        fetch = session.scalars(select(Fetch)).one()
        assert fetch.password == "secret"  # fetchmail needs the plaintext
        token = session.scalars(select(Token)).one()
        assert token.ip == ["192.168.1.1/32"]


# -- refusals --------------------------------------------------------------------------------


def test_validation_errors_are_listed_and_nothing_changes(stack: Stack) -> None:
    ok(stack, "domain", "kept.example")
    document = """\
domain:
  - name: example.com
    max_users: many
    colour: blue
  - name: Example.COM
user:
  - email: bad
  - email: joe@nowhere.example
    password: x
    spam_threshold: 200
  - email: ann@example.com
    enabled: 'yes'
alias:
  - email: team@example.com
    destination: [ok@example.com, broken]
relay:
  - name: relay.example
    smtp: '[2001:db8::1'
stuff: []
"""
    assert failed(stack, "config-import", input=document) == [
        "[ValidationError] 1 errors occurred during input validation",
        "- stuff : unknown section (accepts domain, user, alias, relay)",
    ]
    lines = failed(stack, "config-import", input=document.replace("stuff: []\n", ""))
    assert lines == [
        "[ValidationError] 10 errors occurred during input validation",
        "- domain[0].max_users : expected a whole number",
        "- domain[0].colour : unknown field",
        "- domain[1].name : 'Example.COM' appears more than once",
        "- user[0].email : 'bad' is not an address (local@domain)",
        "- user[1].email : domain 'nowhere.example' does not exist",
        "- user[1].spam_threshold : 200 is out of range (0 to 100)",
        "- user[2].email : domain 'example.com' does not exist",
        "- user[2].enabled : expected true or false",
        "- alias[0].email : domain 'example.com' does not exist",
        "- relay[0].smtp : relay 'relay.example': target '[2001:db8::1': missing ]",
    ]
    assert (
        ok(stack, "config-export")
        == "domain:\n  - name: kept.example\n\nuser: []\n\nalias: []\n\nrelay: []\n"
    )


def test_alias_destination_is_checked(stack: Stack) -> None:
    document = (
        "domain:\n  - name: example.com\n"
        "alias:\n  - email: team@example.com\n    destination: [ok@example.com, broken]\n"
    )
    assert failed(stack, "config-import", input=document) == [
        "[ValidationError] 1 errors occurred during input validation",
        "- alias[0].destination : 'broken': no @",
    ]


def test_duplicate_names_across_kinds_abort(stack: Stack) -> None:
    document = """\
domain:
  - name: example.com
    alternatives: [relay.example]
  - name: other.example
    alternatives: [example.com]
relay:
  - name: relay.example
"""
    assert failed(stack, "config-import", input=document) == [
        "[ValidationError] 2 errors occurred during input validation",
        "- domain[1].alternatives : 'example.com' is already a domain",
        "- relay[0].name : 'relay.example' is already an alternative domain of 'example.com'",
    ]


def test_user_and_alias_cannot_share_an_address(stack: Stack) -> None:
    document = """\
domain:
  - name: example.com
user:
  - email: joe@example.com
    password: x
alias:
  - email: JOE@example.com
    destination: [a@example.org]
"""
    assert failed(stack, "config-import", input=document) == [
        "[ValidationError] 1 errors occurred during input validation",
        "- alias[0].email : 'joe@example.com' is already a user",
    ]


def test_update_notation_needs_update_mode(stack: Stack) -> None:
    document = (
        "domain:\n  - -name: example.com\n  - name: b.example\n    -comment: null\n"
        "  - name: c.example\n    alternatives: [-x.example]\n"
    )
    assert failed(stack, "config-import", input=document) == [
        "[ValidationError] 3 errors occurred during input validation",
        "- domain[0].-name : deleting needs --update",
        "- domain[1].-comment : resetting a field needs --update",
        "- domain[2].alternatives : '-x.example': removing needs --update",
    ]
    document = "user:\n  - email: a@b.example\n    -spam_threshold: 5\n    -password: null\n"
    ok(stack, "domain", "b.example")
    assert failed(stack, "config-import", "-u", input=document) == [
        "[ValidationError] 2 errors occurred during input validation",
        "- user[0].-spam_threshold : a '-field' takes only null (reset to the default)",
        "- user[0].-password : this field has no default to reset to",
    ]


def test_deleting_what_does_not_exist(stack: Stack) -> None:
    document = "user:\n  - -email: Joe@Bücher.example\n"
    assert failed(stack, "config-import", "-u", input=document) == [
        "[ValidationError] 1 errors occurred during input validation",
        "- user[0].-email : user 'joe@bücher.example' does not exist",
    ]


def test_new_objects_need_their_required_fields(stack: Stack) -> None:
    ok(stack, "domain", "example.com")
    document = """\
user:
  - email: joe@example.com
    tokens:
      - comment: no secret
alias:
  - email: team@example.com
"""
    assert failed(stack, "config-import", "-u", input=document) == [
        "[ValidationError] 2 errors occurred during input validation",
        "- user[0].password : required for a new user",
        "- alias[0].destination : required for a new alias",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "- <input> : the input is empty"),
        ("domain: [\n", "- <input> : not YAML or JSON: expected the node content"),
        ("- just\n- a list\n", "- <input> : expected a mapping of sections"),
        ("domain: {name: x}\n", "- domain : expected a list of items"),
    ],
)
def test_unreadable_documents(stack: Stack, text: str, message: str) -> None:
    lines = failed(stack, "config-import", input=text)
    assert lines[0] == "[ValidationError] 1 errors occurred during input validation"
    assert lines[1].startswith(message)
