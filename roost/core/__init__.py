"""Pure domain logic: no I/O, tested in microseconds (DESIGN §1 core)."""
