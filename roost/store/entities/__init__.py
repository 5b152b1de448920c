"""The store's rule book: one module per entity, used by every front end.

Each module (``domain``, ``alternative``, ``relay``, ``user``, ``alias``, ``token``,
``fetch``, ``manager``) holds the entity's fields in Mailu's export format (``FIELDS``:
name, parser with its rules, default), its cross-field rules, and its operations (create,
change, delete, list). The CLI, config-import and config-export all use them, so a field or
rule is written once. ``names`` holds what they share: stored and shown names, lookups and
:class:`ManageError`. Operations take an open session and leave committing to the caller
(:mod:`roost.store.work`), so a failed check never leaves a half-made change.
"""

from roost.store.entities.names import ManageError

__all__ = ["ManageError"]
