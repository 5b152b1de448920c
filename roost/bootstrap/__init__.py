"""Bootstrap: make ROOT ready for a stack (``roost init``, and ``roost up`` before each start)
and install Roost on a host (:mod:`roost.bootstrap.install`, run by setup.sh).

The preparation lives in :mod:`roost.bootstrap.prepare`.
"""

from roost.bootstrap.prepare import BootstrapError, check_parents, directories, initialise

__all__ = ["BootstrapError", "check_parents", "directories", "initialise"]
