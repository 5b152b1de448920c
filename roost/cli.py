"""``roost``: the command line, with Mailu's management verbs and the stack's own commands.

Mailu users run ``flask mailu user joe example.com PASSWORD`` inside a container; here the
same verbs and arguments are ``roost user joe example.com PASSWORD`` on the host. Every
change goes through :mod:`roost.store.manage` and is committed in one transaction, then the
running gate is asked to reload so the next lookup sees it.

A problem the user can fix (a setting, the store, a refused change) is one line on stderr,
``roost: error: <message>``, and exit status 2: scripts can test the status and people
can read the line without a traceback in the way.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any, NoReturn

import click
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session

from roost.layout import Layout
from roost.settings import Settings, SettingsError, load_settings
from roost.store import configio, manage
from roost.store.db import Store, StoreError, alembic_config
from roost.store.manage import ManageError, show_domain, show_email
from roost.store.models import User

__all__ = ["DEFAULT_ENV_FILE", "EXIT_ERROR", "cli", "main"]

#: Read when neither --env nor ROOST_ENV names a settings file and it exists.
DEFAULT_ENV_FILE = Path("/etc/roost/mailu.env")
EXIT_ERROR = 2


class _Context:
    """What the group options decide, opened lazily: not every command needs the store."""

    def __init__(self, env_file: Path | None) -> None:
        self.env_file = env_file
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(env_file=self.env_file)
        return self._settings


def _env_file(option: Path | None) -> Path | None:
    if option is not None:
        return option
    named = os.environ.get("ROOST_ENV")
    if named:
        return Path(named)
    return DEFAULT_ENV_FILE if DEFAULT_ENV_FILE.is_file() else None


class _Group(click.Group):
    """Turns the errors a user can act on into one line and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (SettingsError, StoreError, ManageError) as exc:
            _fail(str(exc))


def _fail(message: str) -> NoReturn:
    click.echo(f"roost: error: {message}", err=True)
    raise click.exceptions.Exit(EXIT_ERROR)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--env",
    "env_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Settings file in mailu.env format (default: $ROOST_ENV, else /etc/roost/mailu.env).",
)
@click.pass_context
def cli(ctx: click.Context, env_file: Path | None) -> None:
    """Roost: a self-hosted mail server. Management verbs follow Mailu's `flask mailu`."""
    ctx.obj = _Context(_env_file(env_file))


def _settings() -> Settings:
    return click.get_current_context().find_object(_Context).settings  # type: ignore[union-attr]


# -- store access ----------------------------------------------------------------------------


def _open_store(settings: Settings) -> Store:
    """Open the store and refuse one that ``roost init`` has not prepared.

    Management verbs never migrate: a schema change is a step the operator takes (``roost
    init`` or ``roost up``), not a side effect of adding an alias.
    """
    url = make_url(settings.database_uri)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        # Checked before opening, which would create the file and its directory: a
        # mistyped ROOT must not leave an empty store behind.
        raise StoreError(f"the store {_shown(url)} is not initialised: run roost init first")
    store = Store.from_settings(settings)
    revision = store.revision()
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if revision != head:
        store.dispose()
        if revision is None:
            raise StoreError(f"the store {store.url} is not initialised: run roost init first")
        raise StoreError(
            f"the store {store.url} has schema {revision}, this Roost needs {head}: "
            "run roost init first"
        )
    return store


def _shown(url: URL) -> str:
    return url.render_as_string(hide_password=True)


@contextmanager
def _session() -> Iterator[Session]:
    """One transaction for one command: committed when the block ends without error."""
    store = _open_store(_settings())
    try:
        with store.session() as session:
            yield session
    finally:
        store.dispose()


@contextmanager
def _changing() -> Iterator[Session]:
    """A transaction that changes the store, then tell the running gate about it."""
    with _session() as session:
        yield session
    _reload(_settings())


def _reload(settings: Settings) -> None:
    """Ask the gate to load the change now; without a gate running there is nothing to do.

    A gate that fails to reload is a warning, not an error: the change is committed, and
    the gate's poll of the store generation picks it up anyway.
    """
    from roost.gate.control import GateControlError, request_reload

    try:
        request_reload(Layout(settings))
    except GateControlError as exc:
        click.echo(f"roost: warning: {exc}", err=True)


def _secret(value: str, what: str) -> str:
    """``-`` reads the secret from stdin, so it stays out of ``ps`` and shell history."""
    if value != "-":
        return value
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise ManageError(f"no {what} on standard input")
    return line


# -- Mailu's verbs -----------------------------------------------------------------------------


@cli.command()
@click.argument("localpart")
@click.argument("domain")
@click.argument("password")
@click.option(
    "-m",
    "--mode",
    type=click.Choice(manage.ADMIN_MODES),
    default="create",
    show_default=True,
    help="create: fail if the user exists; ifmissing: leave it; update: reset its password.",
)
def admin(localpart: str, domain: str, password: str, mode: str) -> None:
    """Create a global administrator (the domain is created if missing)."""
    secret = _secret(password, "password")
    with _changing() as session:
        message = manage.admin(session, _settings(), localpart, domain, secret, mode)
    click.echo(message)


@cli.command()
@click.argument("localpart")
@click.argument("domain")
@click.argument("password")
def user(localpart: str, domain: str, password: str) -> None:
    """Create a user, who must change the password at first login."""
    secret = _secret(password, "password")
    with _changing() as session:
        manage.create_user(session, _settings(), localpart, domain, secret)


@cli.command("user-import")
@click.argument("localpart")
@click.argument("domain")
@click.argument("password_hash")
def user_import(localpart: str, domain: str, password_hash: str) -> None:
    """Create a user from an existing password hash (crypt, bcrypt, argon2, {SCHEME}...)."""
    secret = _secret(password_hash, "password hash")
    with _changing() as session:
        manage.import_user(session, _settings(), localpart, domain, secret)


@cli.command("user-delete")
@click.argument("email")
@click.option("-r", "--really", is_flag=True, help="Delete the user instead of disabling it.")
def user_delete(email: str, really: bool) -> None:
    """Disable a user, or delete it with --really (its tokens and fetches too)."""
    with _changing() as session:
        manage.delete_user(session, manage.parse_email(email), really)


@cli.command()
@click.argument("localpart")
@click.argument("domain")
@click.argument("password")
def password(localpart: str, domain: str, password: str) -> None:
    """Set a user's password; the user must change it at the next login."""
    secret = _secret(password, "password")
    with _changing() as session:
        manage.set_password(session, manage.user_email(localpart, domain), secret)


@cli.command()
@click.argument("domain")
@click.option("-u", "--max-users", type=int, help="Most users (-1: unlimited).")
@click.option("-a", "--max-aliases", type=int, help="Most aliases (-1: unlimited).")
@click.option("-q", "--max-quota-bytes", type=int, help="Largest user quota (0: no cap).")
def domain(
    domain: str, max_users: int | None, max_aliases: int | None, max_quota_bytes: int | None
) -> None:
    """Create a domain, or change the limits given for an existing one."""
    with _changing() as session:
        manage.set_domain(session, domain, max_users, max_aliases, max_quota_bytes)


@cli.command("domain-delete")
@click.argument("domain")
@click.option("-r", "--really", is_flag=True, help="Also delete its users and aliases.")
def domain_delete(domain: str, really: bool) -> None:
    """Delete a domain and its alternatives (refused while it has users or aliases)."""
    with _changing() as session:
        manage.delete_domain(session, domain, really)


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("domain")
@click.argument("max_users", type=int)
@click.argument("max_aliases", type=int)
@click.argument("max_quota_bytes", type=int)
def setlimits(domain: str, max_users: int, max_aliases: int, max_quota_bytes: int) -> None:
    """Set a domain's limits (-1: unlimited users or aliases; 0: no quota cap)."""
    with _changing() as session:
        manage.set_limits(session, domain, max_users, max_aliases, max_quota_bytes)


@cli.command()
@click.argument("domain")
@click.argument("localpart")
def setmanager(domain: str, localpart: str) -> None:
    """Make LOCALPART@DOMAIN a manager of DOMAIN."""
    with _changing() as session:
        manage.set_manager(session, domain, localpart)


@cli.command()
@click.argument("localpart")
@click.argument("domain")
@click.argument("destination")
@click.option(
    "-w", "--wildcard", is_flag=True, help="LOCALPART is a pattern: % any text, _ one character."
)
def alias(localpart: str, domain: str, destination: str, wildcard: bool) -> None:
    """Create an alias to DESTINATION, a comma-separated list of addresses."""
    with _changing() as session:
        manage.create_alias(session, localpart, domain, destination, wildcard)


@cli.command("alias-delete")
@click.argument("email")
def alias_delete(email: str) -> None:
    """Delete an alias."""
    with _changing() as session:
        manage.delete_alias(session, manage.parse_email(email))


@cli.command()
@click.argument("email")
@click.argument("destination", required=False)
@click.option(
    "--keep/--no-keep",
    default=None,
    help="Also keep a copy in EMAIL's own mailbox (the default for new forwards).",
)
@click.option("--off", is_flag=True, help="Stop forwarding (the destinations are kept).")
def forward(email: str, destination: str | None, keep: bool | None, off: bool) -> None:
    """Forward EMAIL's mail to DESTINATION (comma-separated addresses), or show it.

    Mailu users set this on the user's page; every message to EMAIL then also goes to each
    destination, with its envelope sender rewritten (SRS) so it passes SPF on the way.
    """
    address = manage.parse_email(email)
    if off and destination is not None:
        raise click.UsageError("--off takes no DESTINATION")
    if not off and destination is None and keep is None:
        with _session() as session:
            user = manage.require_user(session, address)
            state = "on" if user.forward_enabled else "off"
            copy = "keeps a copy" if user.forward_keep else "keeps no copy"
            targets = ", ".join(show_email(d) for d in user.forward_destination or [])
            click.echo(f"{show_email(user.email)}: forwarding {state}, {copy}")
            click.echo(f"Destinations: {targets}")
        return
    with _changing() as session:
        manage.set_forward(session, address, destination, keep=keep, enabled=False if off else None)


# -- Roost's own verbs -------------------------------------------------------------------------


@cli.group()
def alternative() -> None:
    """Alternative domains: every address @ALTERNATIVE is the same address @DOMAIN."""


@alternative.command("add")
@click.argument("name")
@click.argument("domain")
def alternative_add(name: str, domain: str) -> None:
    """Make NAME an alternative domain of DOMAIN."""
    with _changing() as session:
        manage.add_alternative(session, name, domain)


@alternative.command("delete")
@click.argument("name")
def alternative_delete(name: str) -> None:
    """Remove an alternative domain."""
    with _changing() as session:
        manage.delete_alternative(session, name)


@cli.group()
def relay() -> None:
    """Relayed domains: mail for them is passed on to another server."""


@relay.command("add")
@click.argument("name")
@click.argument("smtp", default="")
def relay_add(name: str, smtp: str) -> None:
    """Relay NAME to SMTP: host[:port], [address]:port, mx:host or lmtp:host (empty: MX)."""
    with _changing() as session:
        manage.add_relay(session, name, smtp)


@relay.command("delete")
@click.argument("name")
def relay_delete(name: str) -> None:
    """Stop relaying a domain."""
    with _changing() as session:
        manage.delete_relay(session, name)


@cli.group()
def token() -> None:
    """App tokens: per-client passwords that can be limited to networks and revoked."""


@token.command("add")
@click.argument("email")
@click.option("-c", "--comment", default="", help="What the token is for.")
@click.option(
    "-i", "--ip", "networks", multiple=True, help="Allow only from this address or network."
)
def token_add(email: str, comment: str, networks: tuple[str, ...]) -> None:
    """Create a token and print it; it is shown only this once."""
    with _changing() as session:
        _token, raw = manage.add_token(session, manage.parse_email(email), comment, networks)
    click.echo(raw)


@token.command("list")
@click.argument("email")
def token_list(email: str) -> None:
    """List a user's tokens: id, comment, networks, creation date (tab-separated)."""
    with _session() as session:
        rows = [
            (str(t.id), t.comment or "", ",".join(t.ip or []), t.created_at.isoformat())
            for t in manage.list_tokens(session, manage.parse_email(email))
        ]
    _table(rows)


@token.command("delete")
@click.argument("email")
@click.argument("token_id", type=int)
def token_delete(email: str, token_id: int) -> None:
    """Revoke a user's token by its id (see `roost token list`)."""
    with _changing() as session:
        manage.delete_token(session, manage.parse_email(email), token_id)


_LISTS = ("domains", "users", "aliases", "alternatives", "relays")


@cli.command("list")
@click.argument("what", type=click.Choice(_LISTS))
@click.argument("domain", required=False)
def list_(what: str, domain: str | None) -> None:
    """List objects, tab-separated with Unicode names (users and aliases: of DOMAIN only).

    \b
    domains:      name, users, aliases, max_users, max_aliases, max_quota_bytes
    users:        email, enabled|disabled, admin|user, quota_bytes, displayed_name
    aliases:      email, destinations, exact|wildcard, enabled|disabled
    alternatives: name, domain
    relays:       name, smtp
    """
    if domain is not None and what not in ("users", "aliases"):
        raise click.UsageError(f"DOMAIN applies to users and aliases, not {what}")
    with _session() as session:
        rows = _LISTERS[what](session, domain)
    _table(rows)


def _domain_rows(session: Session, _domain: str | None) -> list[tuple[str, ...]]:
    return [
        (
            show_domain(d.name),
            str(len(d.users)),
            str(len(d.aliases)),
            str(d.max_users),
            str(d.max_aliases),
            str(d.max_quota_bytes),
        )
        for d in manage.list_domains(session)
    ]


def _user_rows(session: Session, domain: str | None) -> list[tuple[str, ...]]:
    return [
        (
            show_email(u.email),
            "enabled" if u.enabled else "disabled",
            "admin" if u.global_admin else "user",
            str(u.quota_bytes),
            u.displayed_name or "",
        )
        for u in manage.list_users(session, domain)
    ]


def _alias_rows(session: Session, domain: str | None) -> list[tuple[str, ...]]:
    return [
        (
            show_email(a.email),
            ",".join(show_email(d) for d in a.destination),
            "wildcard" if a.wildcard else "exact",
            "disabled" if a.disabled else "enabled",
        )
        for a in manage.list_aliases(session, domain)
    ]


def _alternative_rows(session: Session, _domain: str | None) -> list[tuple[str, ...]]:
    return [
        (show_domain(a.name), show_domain(a.domain_name)) for a in manage.list_alternatives(session)
    ]


def _relay_rows(session: Session, _domain: str | None) -> list[tuple[str, ...]]:
    return [(show_domain(r.name), r.smtp or "") for r in manage.list_relays(session)]


_LISTERS: dict[str, Callable[[Session, str | None], list[tuple[str, ...]]]] = {
    "domains": _domain_rows,
    "users": _user_rows,
    "aliases": _alias_rows,
    "alternatives": _alternative_rows,
    "relays": _relay_rows,
}


def _table(rows: list[tuple[str, ...]]) -> None:
    for row in rows:
        click.echo("\t".join(cell.replace("\t", " ").replace("\n", " ") for cell in row))


# -- mailboxes: quotas and auto-replies ---------------------------------------------------------


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("email", required=False)
@click.argument("quota_bytes", type=int, required=False)
def quota(email: str | None, quota_bytes: int | None) -> None:
    """Show mailbox usage, or set EMAIL's quota to QUOTA_BYTES (0: unlimited).

    \b
    Shows email, bytes used, quota in bytes (tab-separated) for EMAIL or every user.
    Usage is what Dovecot last reported, a second or so after each change.
    """
    if email is None:
        with _session() as session:
            users = manage.list_users(session)
    elif quota_bytes is None:
        with _session() as session:
            users = [manage.require_user(session, manage.parse_email(email))]
    else:
        with _changing() as session:
            manage.set_quota(session, manage.parse_email(email), quota_bytes)
        return
    _table([(show_email(u.email), str(u.quota_bytes_used), str(u.quota_bytes)) for u in users])


@cli.command()
@click.argument("email")
@click.option("--subject", help="The reply's subject (default: Auto: and the original's).")
@click.option("--body", help="The reply's text; - reads it from standard input.")
@click.option("--start", help="First day, YYYY-MM-DD (empty: no first day).")
@click.option("--end", help="Last day, YYYY-MM-DD (empty: no last day).")
@click.option("--off", is_flag=True, help="Turn the auto-reply off (its texts are kept).")
def autoreply(
    email: str,
    subject: str | None,
    body: str | None,
    start: str | None,
    end: str | None,
    off: bool,
) -> None:
    """Turn EMAIL's auto-reply on (any option but --off), off (--off), or show it.

    Each sender gets at most one reply a day; no-reply addresses, mailing lists and
    automatic mail get none.
    """
    address = manage.parse_email(email)
    if not (off or subject is not None or body is not None or start is not None or end is not None):
        with _session() as session:
            user = manage.require_user(session, address)
            lines = _autoreply_lines(user)
        click.echo("\n".join(lines))
        return
    if body == "-":
        body = sys.stdin.read()
    with _changing() as session:
        manage.set_autoreply(
            session,
            address,
            enabled=not off,
            subject=subject,
            body=body,
            start=None
            if start is None
            else manage.parse_reply_date(start, manage.REPLY_START_DEFAULT),
            end=None if end is None else manage.parse_reply_date(end, manage.REPLY_END_DEFAULT),
        )


def _autoreply_lines(user: User) -> list[str]:
    """The auto-reply as people read it: state and days, then subject and text."""
    if not user.reply_enabled:
        state = "off"
    elif user.reply_startdate <= date.today() <= user.reply_enddate:
        state = "on"
    else:
        state = "on, but not today"
    first = (
        ""
        if user.reply_startdate == manage.REPLY_START_DEFAULT
        else (f" from {user.reply_startdate.isoformat()}")
    )
    last = (
        ""
        if user.reply_enddate == manage.REPLY_END_DEFAULT
        else (f" until {user.reply_enddate.isoformat()}")
    )
    return [
        f"{show_email(user.email)}: auto-reply {state}{first}{last}",
        f"Subject: {user.reply_subject or ''}",
        "",
        user.reply_body or "",
    ]


# -- configuration export and import -----------------------------------------------------------


@cli.command("config-export")
@click.argument("filters", nargs=-1, metavar="[FILTER]...")
@click.option("-f", "--full", is_flag=True, help="Include attributes with their default value.")
@click.option("-s", "--secrets", is_flag=True, help="Include secrets (fetch passwords).")
@click.option(
    "-o",
    "--output-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file (mode 0600) instead of standard output.",
)
@click.option("-j", "--json", "as_json", is_flag=True, help="JSON instead of YAML.")
def config_export(
    filters: tuple[str, ...], full: bool, secrets: bool, output_file: Path | None, as_json: bool
) -> None:
    """Export the configuration in Mailu's format (filters: `user`, `domain.name`, ...)."""
    settings = _settings()
    with _session() as session:
        document = configio.export_config(
            session, settings, full=full, secrets=secrets, filters=filters
        )
    text = configio.dump_json(document) if as_json else configio.dump_yaml(document)
    if output_file is None:
        click.echo(text, nl=False)
        return
    try:
        # The export holds password hashes: readable by its owner only (Mailu: umask 077).
        fd = os.open(output_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise ManageError(f"cannot write {output_file}: {exc.strerror or exc}") from None


@cli.command("config-import")
@click.argument("filename", default="-", metavar="[FILENAME|-]")
@click.option("-v", "--verbose", count=True, help="Show each change.")
@click.option("-s", "--secrets", is_flag=True, help="Show secrets in the change lines.")
@click.option("-q", "--quiet", is_flag=True, help="Show only errors.")
@click.option("-u", "--update", is_flag=True, help="Merge into the configuration.")
@click.option("-n", "--dry-run", is_flag=True, help="Check and count, but change nothing.")
def config_import(
    filename: str, verbose: int, secrets: bool, quiet: bool, update: bool, dry_run: bool
) -> None:
    """Import a configuration in Mailu's YAML or JSON format; replaces it unless --update."""
    text = _read_input(filename)
    settings = _settings()
    try:
        document = configio.load_document(text)
        with _session() as session:
            result = configio.import_config(
                session, settings, document, update=update, secrets=secrets
            )
            if dry_run:
                session.rollback()
    except configio.ConfigValidationError as exc:
        for line in exc.lines():
            click.echo(line, err=True)
        raise click.exceptions.Exit(EXIT_ERROR) from None
    if not quiet:
        if verbose:
            for line in result.changes:
                click.echo(line)
        click.echo("Dry run. Not committing changes." if dry_run else "Committing changes.")
        click.echo(result.summary())
    if result.changed and not dry_run:
        _reload(settings)


def _read_input(filename: str) -> str:
    if filename == "-":
        return sys.stdin.read()
    try:
        return Path(filename).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManageError(
            f"cannot read {filename}: {getattr(exc, 'strerror', None) or exc}"
        ) from None


# -- the stack -------------------------------------------------------------------------------


@cli.command()
def init() -> None:
    """Prepare ROOT: directories, the store, the first admin, the TLS certificate."""
    from roost.bootstrap import BootstrapError, initialise

    try:
        messages = initialise(_settings())
    except BootstrapError as exc:
        _fail(str(exc))
    for message in messages:
        click.echo(f"roost: {message}")


@cli.command()
def up() -> None:
    """Run the whole stack in the foreground until SIGTERM or SIGINT."""
    from roost.runner import up as run_stack

    raise click.exceptions.Exit(run_stack(_settings()))


@cli.command()
def status() -> None:
    """Show whether the stack's daemons answer; exit status 0 when all of them do."""
    from roost.runner import status as stack_status

    raise click.exceptions.Exit(stack_status(_settings()))


@cli.command()
def gate() -> None:
    """Run the gate alone in the foreground (started by `roost up`)."""
    from roost.gate.server import serve

    serve(_settings())


def main() -> None:
    """Entry point of the ``roost`` script and ``python -m roost``."""
    cli.main(prog_name="roost")
