"""Postfix's hold queue, for ``roost hold``: which messages wait there, sent by whom, and
releasing or deleting them.

A held login's messages are put on hold by the gate's ``HOLD`` answer (access(5)). Which
login submitted a message is in its queue file as the ``sasl_username`` attribute, which
``postcat -e`` shows; a message Dovecot sent for a user (Sieve redirect, vacation) has
none, and is known by its envelope sender. ``postqueue -j`` lists the queue (one JSON
object a message, postqueue(1)); ``postsuper -H`` releases and ``postsuper -d`` deletes,
reading queue IDs from standard input (postsuper(1)); ``postqueue -f`` delivers the
released ones at once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from roost.services.base import ServiceConfigError
from roost.services.postfix.tools import POSTQUEUE, run

__all__ = ["QueuedMessage", "delete", "held_messages", "release"]

POSTCAT = "postcat"
POSTSUPER = "postsuper"
_SASL_USERNAME = "named_attribute: sasl_username="


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """A message in the hold queue."""

    queue_id: str
    sender: str
    recipients: tuple[str, ...]
    arrival: int
    size: int
    #: The SASL login that submitted it; None for mail that was not submitted.
    login: str | None


def _checked(args: list[str], stdin: str | None = None) -> str:
    result = run(args, stdin=stdin)
    if result.returncode != 0:
        said = (result.stderr or result.stdout).strip()
        raise ServiceConfigError(f"{' '.join(args)}: {said or f'exit {result.returncode}'}")
    return result.stdout


def _login(etc: Path, queue_id: str) -> str | None:
    envelope = run([POSTCAT, "-c", str(etc), "-e", "-q", queue_id])
    if envelope.returncode != 0:
        return None  # gone meanwhile (released or deleted)
    for line in envelope.stdout.splitlines():
        if line.startswith(_SASL_USERNAME):
            return line[len(_SASL_USERNAME) :].strip() or None
    return None


def held_messages(etc: Path) -> list[QueuedMessage]:
    """The messages in the hold queue of the instance configured in ``etc``."""
    listing = _checked([POSTQUEUE, "-c", str(etc), "-j"])
    messages = []
    for line in listing.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("queue_name") != "hold":
            continue
        queue_id = str(entry["queue_id"])
        messages.append(
            QueuedMessage(
                queue_id=queue_id,
                sender=str(entry.get("sender", "")),
                recipients=tuple(str(r.get("address", "")) for r in entry.get("recipients", [])),
                arrival=int(entry.get("arrival_time", 0)),
                size=int(entry.get("message_size", 0)),
                login=_login(etc, queue_id),
            )
        )
    return messages


def _postsuper(etc: Path, flag: str, queue_ids: Sequence[str]) -> None:
    if queue_ids:
        _checked([POSTSUPER, "-c", str(etc), flag, "-"], stdin="".join(f"{q}\n" for q in queue_ids))


def release(etc: Path, queue_ids: Sequence[str]) -> None:
    """Send the messages on: postsuper -H moves them to the deferred queue, which
    Postfix would only look at again after queue_run_delay; ``postqueue -f`` makes it
    deliver them now."""
    if queue_ids:
        _postsuper(etc, "-H", queue_ids)
        _checked([POSTQUEUE, "-c", str(etc), "-f"])


def delete(etc: Path, queue_ids: Sequence[str]) -> None:
    """Delete the messages from the queue."""
    _postsuper(etc, "-d", queue_ids)
