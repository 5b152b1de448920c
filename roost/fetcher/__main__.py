"""``python -m roost.fetcher``: the fetched-account loop, started by ``roost up``
(roost.services.fetchmail) with every setting in its environment."""

from __future__ import annotations

import sys

from roost.fetcher.rounds import run
from roost.layout import Layout
from roost.process import settings_or_exit


def main() -> int:
    run(Layout(settings_or_exit("fetchmail")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
