"""Pure domain logic: no I/O, tested in microseconds."""
