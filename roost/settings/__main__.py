"""``python -m roost.settings``: print or rewrite the configuration reference's tables.

python -m roost.settings --markdown                     # every table, to stdout
python -m roost.settings --write docs/configuration.md  # the tables in place
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from roost.settings.reference import render_all, write_document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m roost.settings")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--markdown", action="store_true", help="print every table")
    action.add_argument("--write", type=Path, metavar="FILE", help="rewrite FILE's tables")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(render_all())
        return 0
    changed = write_document(args.write)
    print(f"{args.write}: {'updated' if changed else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
