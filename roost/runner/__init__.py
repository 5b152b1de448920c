"""The runner: ``roost up`` runs the stack's daemons in the foreground, ``roost status``
reports on them.

- :mod:`roost.runner.main`: ``up`` (lock, prepare ROOT, render, supervise) and its exit codes.
- :mod:`roost.runner.stack`: which daemons run (the services registry), in which order.
- :mod:`roost.runner.supervisor`: start, probe, restart, reload and stop the children.
- :mod:`roost.runner.logrelay`: the merged log, every child's lines behind its name.
- :mod:`roost.runner.certwatch`: a new certificate reloads the daemons that serve it.
- :mod:`roost.runner.health`: ``roost status`` from the status file and the processes.
"""

from roost.runner.health import status
from roost.runner.main import EXIT_CONFIG, EXIT_FAILED, up

__all__ = ["EXIT_CONFIG", "EXIT_FAILED", "status", "up"]
