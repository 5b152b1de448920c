"""``config-export`` and ``config-import``: the whole configuration as Mailu's YAML or JSON.

The format is Mailu's (``flask mailu config-export``, documented in Mailu's docs/cli.rst),
so an export from Mailu loads here and the other way round: sections ``domain``, ``user``,
``alias``, ``relay``; each item keyed by ``name`` or ``email``; only values that differ
from their defaults unless ``full``; secrets as ``<hidden>`` unless ``secrets``; names in
Unicode. Each section's fields, parsers, rules and defaults are its entity's declaration
(roost.store.entities), so the CLI and the import refuse the same values alike.

Import has two modes. *Replace* (the default) deletes every object of the section types
the document contains -- with what the store cascades from them, as in Mailu: a
``domain`` section takes the domains' users and aliases with it -- and recreates them from
the document. *Update* merges: items are matched by key, absent fields keep their stored
value, and Mailu's ``-key`` notation deletes (``- -name: x`` one object, ``- -name: null``
every object not mentioned, ``- -value`` one list value, ``- -prune-`` every list value not
mentioned, ``-field: null`` back to the default).

Every problem found is collected with its path, and nothing is written unless there are
none. The counters compare the store before and after, so re-importing an export says
``No changes.`` in either mode (but for a fetch's last check and error, run-time state
that only ``--full`` exports).

Roost checks what Mailu's import does not: names and addresses must be valid, users and
aliases must not share an address, a name serves one of domain, alternative or relay, and
each value follows its entity's rules (an auto-reply's texts and dates, a quota within the
domain's cap). Domain limits (max_users, max_aliases) are not enforced, as in Mailu: an
import restores a state, it does not grow one (``import_config(check_limits=True)`` does
enforce them). A domain's ``dkim_key`` is a file, not a column (roost.store.dkimkeys):
``-generate-`` makes one, a PEM sets it, ``<hidden>`` keeps it, empty removes it; the files
change only when the import commits (docs/dkim.md).
"""

from roost.store.configio.common import HIDDEN, SECTIONS, ConfigValidationError
from roost.store.configio.export import dump_json, dump_yaml, export_config
from roost.store.configio.importing import ImportResult, import_config, load_document

__all__ = [
    "HIDDEN",
    "SECTIONS",
    "ConfigValidationError",
    "ImportResult",
    "dump_json",
    "dump_yaml",
    "export_config",
    "import_config",
    "load_document",
]
