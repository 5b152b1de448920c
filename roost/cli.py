"""``roost``: the command line, with Mailu's management verbs and the stack's own commands.

Mailu users run ``flask mailu user joe example.com PASSWORD`` inside a container; here the
same verbs and arguments are ``roost user joe example.com PASSWORD`` on the host. This
module only parses arguments and prints: every change is an operation of the store's rule
book (:mod:`roost.store.entities`) inside one unit of work (:func:`roost.store.work.change`:
one transaction, then the running gate is asked to reload so the next lookup sees it).

A problem the user can fix (a setting, the store, a refused change) is one line on stderr,
``roost: error: <message>``, and exit status 2: scripts can test the status and people
can read the line without a traceback in the way.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from sqlalchemy.orm import Session

from roost.settings import Settings, SettingsError, check_start_secrets, load_settings
from roost.store import configio, work
from roost.store.db import StoreError
from roost.store.entities import alias as aliases
from roost.store.entities import alternative as alternatives
from roost.store.entities import domain as domains
from roost.store.entities import manager as managers
from roost.store.entities import relay as relays
from roost.store.entities import token as tokens
from roost.store.entities import user as users
from roost.store.entities.names import (
    ManageError,
    parse_email,
    require_user,
    show_domain,
    show_email,
    user_email,
)
from roost.store.models import User

if TYPE_CHECKING:
    from roost.core.directory import Directory
    from roost.services.postfix.queue import QueuedMessage

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


def _signing_settings() -> Settings:
    """The settings of a command that starts what signs with SECRET_KEY (the gate's SRS)
    or serves the API with API_TOKEN.

    A key or token others know or can guess is refused here, before anything starts.
    """
    context = click.get_current_context().find_object(_Context)
    settings = _settings()
    check_start_secrets(settings, context.env_file if context else None)
    return settings


# -- store access ----------------------------------------------------------------------------


@contextmanager
def _session() -> Iterator[Session]:
    """One transaction that reads the store."""
    with work.read(_settings()) as session:
        yield session


@contextmanager
def _changing() -> Iterator[Session]:
    """One transaction that changes the store; the running gate is told afterwards."""
    with work.change(_settings(), warn=_warn) as session:
        yield session


def _warn(message: str) -> None:
    click.echo(f"roost: warning: {message}", err=True)


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
    type=click.Choice(users.ADMIN_MODES),
    default="create",
    show_default=True,
    help="create: fail if the user exists; ifmissing: leave it; update: reset its password.",
)
def admin(localpart: str, domain: str, password: str, mode: str) -> None:
    """Create a global administrator (the domain is created if missing)."""
    secret = _secret(password, "password")
    with _changing() as session:
        message = users.admin(session, _settings(), localpart, domain, secret, mode)
    click.echo(message)


@cli.command()
@click.argument("localpart")
@click.argument("domain")
@click.argument("password")
def user(localpart: str, domain: str, password: str) -> None:
    """Create a user, who must change the password at first login."""
    secret = _secret(password, "password")
    with _changing() as session:
        users.create_user(session, _settings(), localpart, domain, secret)


@cli.command("user-import")
@click.argument("localpart")
@click.argument("domain")
@click.argument("password_hash")
def user_import(localpart: str, domain: str, password_hash: str) -> None:
    """Create a user from an existing password hash (crypt, bcrypt, argon2, {SCHEME}...)."""
    secret = _secret(password_hash, "password hash")
    with _changing() as session:
        users.import_user(session, _settings(), localpart, domain, secret)


@cli.command("user-delete")
@click.argument("email")
@click.option("-r", "--really", is_flag=True, help="Delete the user instead of disabling it.")
def user_delete(email: str, really: bool) -> None:
    """Disable a user, or delete it with --really (its tokens and fetches too)."""
    with _changing() as session:
        users.delete_user(session, parse_email(email), really)


@cli.command()
@click.argument("localpart")
@click.argument("domain")
@click.argument("password")
def password(localpart: str, domain: str, password: str) -> None:
    """Set a user's password; the user must change it at the next login."""
    secret = _secret(password, "password")
    with _changing() as session:
        users.set_password(session, user_email(localpart, domain), secret)


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
        domains.set_domain(session, domain, max_users, max_aliases, max_quota_bytes)


@cli.command("domain-delete")
@click.argument("domain")
@click.option("-r", "--really", is_flag=True, help="Also delete its users and aliases.")
def domain_delete(domain: str, really: bool) -> None:
    """Delete a domain and its alternatives (refused while it has users or aliases)."""
    with _changing() as session:
        domains.delete_domain(session, domain, really)


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("domain")
@click.argument("max_users", type=int)
@click.argument("max_aliases", type=int)
@click.argument("max_quota_bytes", type=int)
def setlimits(domain: str, max_users: int, max_aliases: int, max_quota_bytes: int) -> None:
    """Set a domain's limits (-1: unlimited users or aliases; 0: no quota cap)."""
    with _changing() as session:
        domains.set_limits(session, domain, max_users, max_aliases, max_quota_bytes)


@cli.command()
@click.argument("domain")
@click.argument("localpart")
def setmanager(domain: str, localpart: str) -> None:
    """Make LOCALPART@DOMAIN a manager of DOMAIN."""
    with _changing() as session:
        managers.set_manager(session, domain, localpart)


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
        aliases.create_alias(session, localpart, domain, destination, wildcard)


@cli.command("alias-delete")
@click.argument("email")
def alias_delete(email: str) -> None:
    """Delete an alias."""
    with _changing() as session:
        aliases.delete_alias(session, parse_email(email))


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
    address = parse_email(email)
    if off and destination is not None:
        raise click.UsageError("--off takes no DESTINATION")
    if not off and destination is None and keep is None:
        with _session() as session:
            user = require_user(session, address)
            state = "on" if user.forward_enabled else "off"
            copy = "keeps a copy" if user.forward_keep else "keeps no copy"
            targets = ", ".join(show_email(d) for d in user.forward_destination or [])
            click.echo(f"{show_email(user.email)}: forwarding {state}, {copy}")
            click.echo(f"Destinations: {targets}")
        return
    with _changing() as session:
        users.set_forward(session, address, destination, keep=keep, enabled=False if off else None)


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
        alternatives.add_alternative(session, name, domain)


@alternative.command("delete")
@click.argument("name")
def alternative_delete(name: str) -> None:
    """Remove an alternative domain."""
    with _changing() as session:
        alternatives.delete_alternative(session, name)


@cli.group()
def relay() -> None:
    """Relayed domains: mail for them is passed on to another server."""


@relay.command("add")
@click.argument("name")
@click.argument("smtp", default="")
def relay_add(name: str, smtp: str) -> None:
    """Relay NAME to SMTP: host[:port], [address]:port, mx:host or lmtp:host (empty: MX)."""
    with _changing() as session:
        relays.add_relay(session, name, smtp)


@relay.command("delete")
@click.argument("name")
def relay_delete(name: str) -> None:
    """Stop relaying a domain."""
    with _changing() as session:
        relays.delete_relay(session, name)


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
        _token, raw = tokens.add_token(session, parse_email(email), comment, networks)
    click.echo(raw)


@token.command("list")
@click.argument("email")
def token_list(email: str) -> None:
    """List a user's tokens: id, comment, networks, creation date (tab-separated)."""
    with _session() as session:
        rows = [
            (str(t.id), t.comment or "", ",".join(t.ip or []), t.created_at.isoformat())
            for t in tokens.list_tokens(session, parse_email(email))
        ]
    _table(rows)


@token.command("delete")
@click.argument("email")
@click.argument("token_id", type=int)
def token_delete(email: str, token_id: int) -> None:
    """Revoke a user's token by its id (see `roost token list`)."""
    with _changing() as session:
        tokens.delete_token(session, parse_email(email), token_id)


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
        for d in domains.list_domains(session)
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
        for u in users.list_users(session, domain)
    ]


def _alias_rows(session: Session, domain: str | None) -> list[tuple[str, ...]]:
    return [
        (
            show_email(a.email),
            ",".join(show_email(d) for d in a.destination),
            "wildcard" if a.wildcard else "exact",
            "disabled" if a.disabled else "enabled",
        )
        for a in aliases.list_aliases(session, domain)
    ]


def _alternative_rows(session: Session, _domain: str | None) -> list[tuple[str, ...]]:
    return [
        (show_domain(a.name), show_domain(a.domain_name))
        for a in alternatives.list_alternatives(session)
    ]


def _relay_rows(session: Session, _domain: str | None) -> list[tuple[str, ...]]:
    return [(show_domain(r.name), r.smtp or "") for r in relays.list_relays(session)]


_LISTERS: dict[str, Callable[[Session, str | None], list[tuple[str, ...]]]] = {
    "domains": _domain_rows,
    "users": _user_rows,
    "aliases": _alias_rows,
    "alternatives": _alternative_rows,
    "relays": _relay_rows,
}


def _table(rows: Sequence[tuple[str, ...]]) -> None:
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
            listed = users.list_users(session)
    elif quota_bytes is None:
        with _session() as session:
            listed = [require_user(session, parse_email(email))]
    else:
        with _changing() as session:
            users.set_quota(session, parse_email(email), quota_bytes)
        return
    _table([(show_email(u.email), str(u.quota_bytes_used), str(u.quota_bytes)) for u in listed])


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
    address = parse_email(email)
    if not (off or subject is not None or body is not None or start is not None or end is not None):
        with _session() as session:
            user = require_user(session, address)
            lines = _autoreply_lines(user)
        click.echo("\n".join(lines))
        return
    if body == "-":
        body = sys.stdin.read()
    with _changing() as session:
        users.set_autoreply(
            session,
            address,
            enabled=not off,
            subject=subject,
            body=body,
            start=None
            if start is None
            else users.parse_reply_date(start, users.REPLY_START_DEFAULT),
            end=None if end is None else users.parse_reply_date(end, users.REPLY_END_DEFAULT),
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
        if user.reply_startdate == users.REPLY_START_DEFAULT
        else (f" from {user.reply_startdate.isoformat()}")
    )
    last = (
        ""
        if user.reply_enddate == users.REPLY_END_DEFAULT
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
@click.option("-s", "--secrets", is_flag=True, help="Include secrets (DKIM keys, fetch passwords).")
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
    _write_private(output_file, text)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only; never through a symlink.

    The export holds password hashes, and with --secrets fetch passwords (Mailu: umask
    077). The file is created 0600 from the start, and a symbolic link at ``path`` is
    refused rather than followed: run as root, following it would truncate whatever file
    the link points to.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ManageError(f"cannot write {path}: it is a symbolic link") from None
        raise ManageError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)  # an existing file keeps its mode otherwise
            handle.write(text)
    except OSError as exc:
        raise ManageError(f"cannot write {path}: {exc.strerror or exc}") from None


@cli.command("config-import")
@click.argument("filename", default="-", metavar="[FILENAME|-]")
@click.option("-v", "--verbose", count=True, help="Show each change.")
@click.option("-s", "--secrets", is_flag=True, help="Show secrets in the change lines.")
@click.option("-q", "--quiet", is_flag=True, help="Show only errors.")
@click.option("-u", "--update", is_flag=True, help="Merge into the configuration.")
@click.option("-n", "--dry-run", is_flag=True, help="Check and count, but change nothing.")
@click.option(
    "--check-limits",
    is_flag=True,
    help="Refuse new users and aliases beyond their domain's max_users / max_aliases.",
)
def config_import(
    filename: str,
    verbose: int,
    secrets: bool,
    quiet: bool,
    update: bool,
    dry_run: bool,
    check_limits: bool,
) -> None:
    """Import a configuration in Mailu's YAML or JSON format; replaces it unless --update.

    Like Mailu's, the import ignores the domains' max_users and max_aliases (it restores a
    state); --check-limits applies them, for imports that grow a server.
    """
    text = _read_input(filename)
    settings = _settings()
    if not dry_run and work.is_new(settings):
        # A new server: prepare the store as `roost init` does, so that importing an
        # export is the whole migration (Mailu's migration guide imports into a new one).
        from roost.bootstrap.prepare import prepare_store

        for message in prepare_store(settings):
            if not quiet:
                click.echo(f"roost: {message}")
    try:
        document = configio.load_document(text)
        with _session() as session:
            result = configio.import_config(
                session,
                settings,
                document,
                update=update,
                secrets=secrets,
                check_limits=check_limits,
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
        work.reload_gate(settings, _warn)


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
    from roost import tls
    from roost.bootstrap import BootstrapError, initialise

    try:
        messages = initialise(_signing_settings())
    except (BootstrapError, tls.TLSError) as exc:
        _fail(str(exc))
    for message in messages:
        click.echo(f"roost: {message}")


@cli.command()
def up() -> None:
    """Run the whole stack in the foreground until SIGTERM or SIGINT."""
    from roost.runner import up as run_stack

    raise click.exceptions.Exit(run_stack(_signing_settings()))


@cli.command()
def status() -> None:
    """Show whether the stack's daemons answer; exit status 0 when all of them do."""
    from roost.runner import status as stack_status

    raise click.exceptions.Exit(stack_status(_settings()))


@cli.group()
def certificate() -> None:
    """The certificate the stack serves (TLS_FLAVOR letsencrypt: certbot's)."""


@certificate.command("renew")
@click.option(
    "--force", is_flag=True, help="Issue a new certificate even if the current one is not due."
)
def certificate_renew(force: bool) -> None:
    """Run certbot now for all HOSTNAMES, as the running stack does twice a day.

    The stack must be running (nginx answers the CA's HTTP-01 challenges on port 80). A
    new certificate is served within seconds, without a restart. Exit status 0 when the
    certificate covers every host name, 1 otherwise.
    """
    from roost.layout import Layout
    from roost.runner.lock import LOCK_NAME, is_held
    from roost.tls.acme import obtain

    settings = _settings()
    layout = Layout(settings)
    if not settings.acme:
        _fail(
            f"TLS_FLAVOR={settings.TLS_FLAVOR}: no ACME certificate to renew (only "
            "letsencrypt and mail-letsencrypt get theirs from certbot)"
        )
    if not is_held(layout.run / LOCK_NAME):
        _fail(
            f"`roost up` is not running for {layout.root}: the CA fetches its challenge "
            "from nginx on port 80; start the stack first"
        )
    outcome = obtain(layout, force=force)
    for line in outcome.lines():
        click.echo(line)
    state = outcome.state
    raise click.exceptions.Exit(1 if state.error or state.left_out else 0)


@cli.command()
def gate() -> None:
    """Run the gate alone in the foreground (started by `roost up`)."""
    from roost.gate.server import serve

    serve(_signing_settings())


@cli.command("dmarc-report")
@click.argument("day", required=False, metavar="[YYYYMMDD]")
@click.option(
    "-n", "--dry-run", is_flag=True, help="List what would be sent; send and change nothing."
)
def dmarc_report(day: str | None, dry_run: bool) -> None:
    """Send one day's DMARC aggregate reports now (default: yesterday's).

    The stack must be running. The daily process sends yesterday's at 02:00 by itself;
    this is for a day it missed or to see what it would send (docs/filtering.md). Exit
    status 1 when a report could not be handed to Postfix or rspamadm failed.
    """
    from datetime import timedelta

    from roost.core.dmarcreport import parse_day
    from roost.dmarcreport import DmarcReportError, send_day
    from roost.layout import Layout

    try:
        wanted = date.today() - timedelta(days=1) if day is None else parse_day(day)
    except ValueError as exc:
        _fail(str(exc))
    try:
        result = send_day(Layout(_settings()), wanted, dry_run=dry_run)
    except DmarcReportError as exc:
        _fail(str(exc))
    for line in result.lines():
        click.echo(line)
    if not result.ok:
        raise click.exceptions.Exit(1)


@cli.command()
@click.argument("domain")
@click.option("--zone", is_flag=True, help="Print the records as a zone file (RFC 1035).")
@click.option("--check", is_flag=True, help="Also look each record up in DNS now.")
@click.option(
    "--resolver",
    metavar="ADDR[:PORT]",
    help="With --check: the DNS resolver to ask (default: the system's).",
)
def dns(domain: str, zone: bool, check: bool, resolver: str | None) -> None:
    """The DNS records to publish for DOMAIN and its alternatives; --check: are they live?

    With --check the exit status is 0 only when every record is live.
    """
    from roost import tls
    from roost.core import dnsrecords
    from roost.layout import Layout
    from roost.store.entities.names import domain_name, require_domain

    settings = _settings()
    with _session() as session:
        found = require_domain(session, domain_name(domain))
        name, alternative_names = found.name, [a.name for a in found.alternatives]
        keys = domains.dkim_published(session, settings, name)
    served = tls.served_key(Layout(settings))
    if zone:
        text = dnsrecords.zone_file(
            settings, name, alternative_names, dkim_keys=keys, served=served
        )
        click.echo(text, nl=False)
        return
    records = dnsrecords.records(settings, name, alternative_names, dkim_keys=keys, served=served)
    left_out = dnsrecords.omitted(settings, name, dkim_keys=keys, served=served)
    if not check:
        for record in records:
            click.echo(record.line)
        for reason in left_out:
            click.echo(f"Left out: {reason}")
        return
    from roost import dnscheck

    try:
        server = dnscheck.parse_resolver(resolver) if resolver else None
    except ValueError as exc:
        _fail(str(exc))
    checks = dnscheck.check_records(records, server)
    for result in checks:
        click.echo(f"{result.state:<8} {result.record.line}")
        if result.reason:
            click.echo(f"         ({result.reason})")
        elif result.state != dnscheck.LIVE:
            for text in result.found:
                click.echo(f"         found: {text}")
    for reason in left_out:
        click.echo(f"Left out: {reason}")
    if any(result.state != dnscheck.LIVE for result in checks):
        raise click.exceptions.Exit(1)


@cli.command()
@click.argument("domain", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="One JSON document, for monitoring.")
@click.option(
    "--resolver",
    metavar="ADDR[:PORT]",
    help="The DNS resolver to ask (default: the system's).",
)
def doctor(domain: tuple[str, ...], as_json: bool, resolver: str | None) -> None:
    """Check each DOMAIN (default: all) and the mail host; say what is wrong and the fix.

    MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT, TLSA, reverse DNS and HELO, the certificate,
    and which ports answer (docs/doctor.md). Exit status 0 when nothing is wrong
    (warnings allowed), 1 when something is, 3 when a check could not be made (a DNS
    timeout, say) and nothing is wrong otherwise.
    """
    import json
    from datetime import UTC

    from dns.exception import DNSException

    from roost import dnscheck
    from roost.doctor import DomainFacts, Probe, diagnose, read_certificate
    from roost.layout import Layout
    from roost.store.entities.names import domain_name, require_domain
    from roost.store.snapshot import load_directory

    settings = _settings()
    try:
        server = dnscheck.parse_resolver(resolver) if resolver else None
    except ValueError as exc:
        _fail(str(exc))
    store = work.open_store(settings)
    try:
        directory = load_directory(store)
    finally:
        store.dispose()
    with _session() as session:
        if domain:
            found = [require_domain(session, domain_name(name)) for name in domain]
        else:
            found = domains.list_domains(session)
        facts = [
            DomainFacts(
                d.name,
                tuple(sorted(a.name for a in d.alternatives)),
                tuple(domains.dkim_published(session, settings, d.name)),
                directory.resolve(f"{settings.POSTMASTER}@{d.name}") is not None,
            )
            for d in found
        ]
    try:
        probe = Probe(server)
    except (DNSException, OSError, ValueError) as exc:  # no usable /etc/resolv.conf
        _fail(f"no DNS resolver ({exc}); name one with --resolver ADDR[:PORT]")
    now = datetime.now(UTC)
    report = diagnose(settings, facts, probe, read_certificate(Layout(settings), now), now)
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    else:
        click.echo(report.as_text(), nl=False)
    if report.exit_status:
        raise click.exceptions.Exit(report.exit_status)


@cli.group("dkim")
def dkim_group() -> None:
    """DKIM: a domain's signing key and the records that publish it (docs/dkim.md)."""


@dkim_group.command("generate")
@click.argument("domain")
def dkim_generate(domain: str) -> None:
    """Make a new RSA-2048 DKIM key for DOMAIN (replacing its key) and show what to publish.

    Mail is signed with the new key at once: publish the DKIM record straight away, or
    receivers fail the signatures until they see it.
    """
    settings = _settings()
    with _changing() as session:
        name = domains.generate_dkim_key(session, settings, domain).name
    click.echo(f"DKIM key generated for {show_domain(name)}; publish these records:")
    _dkim_records(name)


@dkim_group.command("show")
@click.argument("domain")
def dkim_show(domain: str) -> None:
    """The DKIM, DMARC and DMARC report records to publish for DOMAIN and its alternatives."""
    _dkim_records(domain)


@dkim_group.command("rotate")
@click.argument("domain")
@click.option(
    "--resolver",
    metavar="ADDR[:PORT]",
    help="The DNS resolver that must see the new record (default: the system's).",
)
def dkim_rotate(domain: str, resolver: str | None) -> None:
    """Replace DOMAIN's key without a gap, one step per run (docs/dkim.md).

    1: a new key under the second selector, to publish beside the current one;
    2: once its record is in DNS, sign with it (exit status 1 while it is not);
    3: retire the old key, whose record can then go.
    """
    from roost import dnscheck
    from roost.core import dkim as dkimkey
    from roost.core import dnsrecords
    from roost.store.dkimkeys import DkimKeys
    from roost.store.entities.names import domain_name, require_domain

    settings = _settings()
    with _session() as session:
        name = require_domain(session, domain_name(domain)).name
    try:
        server = dnscheck.parse_resolver(resolver) if resolver else None
    except ValueError as exc:
        _fail(str(exc))

    def live(selector: str, public: str) -> bool:
        record = dnsrecords.Record(
            dnsrecords.fqdn(dkimkey.record_name(selector, name)),
            "TXT",
            (dkimkey.record_text(public),),
            name,
            "DKIM",
        )
        (result,) = dnscheck.check_records([record], server)
        return result.state == dnscheck.LIVE

    try:
        step = DkimKeys(settings).rotate(name, live)
    except dkimkey.DkimKeyError as exc:
        _fail(str(exc))
    shown = show_domain(name)
    if step.step == "waiting":
        click.echo(
            f"{shown}: the record of the new key ({step.other}) is not in DNS yet; mail is "
            f"still signed with {step.active}. Publish it, then run this again:"
        )
        _dkim_records(name, only=step.other)
        raise click.exceptions.Exit(1)
    work.reload_gate(settings, _warn)
    if step.step == "published":
        click.echo(
            f"{shown}: a new key under the selector {step.other}; mail is still signed with "
            f"{step.active}. Publish these records beside the current ones, then run "
            f"roost dkim rotate {name} again:"
        )
        _dkim_records(name, only=step.other)
    elif step.step == "switched":
        click.echo(
            f"{shown}: signing with {step.active} now (Rspamd reads the change within its "
            f"map_watch_interval, 5 minutes by default). Keep the records of {step.other} "
            "for a few days, for mail already sent, then run roost dkim rotate "
            f"{name} again to retire that key."
        )
    else:
        click.echo(
            f"{shown}: the old key ({step.other}) is retired; mail is signed with "
            f"{step.active}. Remove these records from DNS:"
        )
        with _session() as session:
            found = require_domain(session, name)
            for record_name in [name, *sorted(a.name for a in found.alternatives)]:
                click.echo(f"{dkimkey.record_name(step.other, record_name)}. TXT")


def _dkim_records(domain: str, only: str | None = None) -> None:
    """The DKIM and DMARC records of the domain and its alternatives (with ``only``: the
    DKIM records of that selector)."""
    from roost.core import dnsrecords
    from roost.store.entities.names import domain_name, require_domain

    settings = _settings()
    with _session() as session:
        found = require_domain(session, domain_name(domain))
        name, alternative_names = found.name, [a.name for a in found.alternatives]
        keys = domains.dkim_published(session, settings, name)
    if not keys:
        _fail(f"{show_domain(name)} has no DKIM key: roost dkim generate {name}")
    for record in dnsrecords.records(settings, name, alternative_names, dkim_keys=keys):
        if record.rtype != "TXT" or str(record.data[0]).startswith("v=spf1"):
            continue
        if only is None or record.name.startswith(f"{only}._domainkey."):
            click.echo(record.line)


@cli.group("2fa")
def two_factor() -> None:
    """Two-factor login (TOTP): see where a user stands, turn it off, require it per domain.

    Users enrol on the web (their account page); these commands are the administrator's
    way to help one who lost the phone and the recovery codes.
    """


@two_factor.command("status")
@click.argument("email")
def two_factor_status(email: str) -> None:
    """Whether EMAIL has two-factor login on, must have it, and how many recovery codes are left."""
    with _session() as session:
        address = parse_email(email)
        status = users.two_factor_status(session, _settings(), address)
    state = "on" if status.enabled else "off"
    if status.pending:
        state += " (enrolment begun, not confirmed)"
    click.echo(f"{show_email(address)}: two-factor login {state}")
    if status.enabled:
        click.echo(f"recovery codes left: {status.recovery_codes_left}")
    if status.required:
        click.echo("required: by the domain or AUTH_REQUIRE_TOTP")


@two_factor.command("disable")
@click.argument("email")
def two_factor_disable(email: str) -> None:
    """Turn EMAIL's two-factor login off (forgets its secret and recovery codes)."""
    with _changing() as session:
        user = users.disable_two_factor(session, parse_email(email))
        shown = show_email(user.email)
    click.echo(f"two-factor login of {shown} is off")


@two_factor.command("enforce")
@click.argument("domain")
@click.argument("state", type=click.Choice(["on", "off"]))
def two_factor_enforce(domain: str, state: str) -> None:
    """Require two-factor login of DOMAIN's users (on) or leave it to each user (off)."""
    with _changing() as session:
        found = domains.set_totp_required(session, domain, state == "on")
        shown = show_domain(found.name)
    click.echo(f"two-factor login required in {shown}: {state}")


@cli.group("hold")
def hold() -> None:
    """Held senders: logins whose submitted mail was mostly spam (SPAM_HOLD_RATE).

    A held login's further messages are accepted but wait in Postfix's hold queue; the
    postmaster was told by mail. The stack must be running (docs/filtering.md).
    """


def _hold_queue() -> tuple[Directory, dict[str | None, list[QueuedMessage]]]:
    """The store's directory, and the hold queue's messages by the user who sent them
    (None: not one of ours)."""
    from roost.layout import Layout
    from roost.services.postfix import queue
    from roost.store.snapshot import load_directory

    settings = _settings()
    store = work.open_store(settings)
    try:
        directory = load_directory(store)
    finally:
        store.dispose()
    waiting: dict[str | None, list[QueuedMessage]] = {}
    for message in queue.held_messages(Layout(settings).service_etc("postfix")):
        if message.login is not None:
            user = directory.user(message.login)
        else:
            user = directory.user_of(message.sender, settings.RECIPIENT_DELIMITER)
        waiting.setdefault(user.email if user is not None else None, []).append(message)
    return directory, waiting


@hold.command("list")
def hold_list() -> None:
    """The held logins, since when, why, and how many of their messages wait."""
    from roost.gate.control import GateControlError, held_senders
    from roost.layout import Layout
    from roost.services.base import ServiceConfigError

    try:
        held = held_senders(Layout(_settings()))
        _, waiting = _hold_queue()
    except (GateControlError, ServiceConfigError) as exc:
        _fail(str(exc))
    rows = [("LOGIN", "HELD SINCE", "SPAM", "WAITING")]
    for entry in held:
        since = datetime.fromtimestamp(entry.since).astimezone().strftime("%Y-%m-%d %H:%M %Z")
        spam = f"{entry.spam} of {entry.total}"
        rows.append((show_email(entry.login), since, spam, str(len(waiting.get(entry.login, [])))))
    if held:
        _table(rows)
    else:
        click.echo("no sender is held")
    held_logins = {entry.login for entry in held}
    others = sum(len(m) for owner, m in waiting.items() if owner not in held_logins)
    if others:
        click.echo(f"{others} other message(s) wait in the hold queue (postqueue -j shows them)")


@hold.command("release")
@click.argument("login")
@click.option("--delete", is_flag=True, help="Delete the waiting messages instead of sending them.")
def hold_release(login: str, delete: bool) -> None:
    """Lift the hold on LOGIN and send its waiting messages (or delete them)."""
    from roost.gate.control import GateControlError, release_sender
    from roost.layout import Layout
    from roost.services.base import ServiceConfigError
    from roost.services.postfix import queue

    layout = Layout(_settings())
    try:
        held = release_sender(layout, login)
        directory, waiting = _hold_queue()
        user = directory.user(login)
        owner = held.login if held is not None else user.email if user else parse_email(login)
        ids = [message.queue_id for message in waiting.get(owner, [])]
        etc = layout.service_etc("postfix")
        (queue.delete if delete else queue.release)(etc, ids)
    except (GateControlError, ServiceConfigError) as exc:
        _fail(str(exc))
    done = "deleted" if delete else "released for delivery"
    state = "hold lifted" if held is not None else "was not held"
    click.echo(f"{show_email(owner)}: {state}; {len(ids)} waiting message(s) {done}")


def main() -> None:
    """Entry point of the ``roost`` script and ``python -m roost``."""
    cli.main(prog_name="roost")
