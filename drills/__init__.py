"""Reliability drills: the whole daemon, as processes, under faults; invariants checked after.

`drills.drill.Drill` sets the stage (the IB Gateway simulator in this process, a real Redis
server, a SQLite file, the daemon as `main.py run` processes), `drills.faults` injects the
faults, and `drills.invariants` checks what must hold afterwards, as a table of figures.
The short version runs in the test suite (tests/drills/); `make soak` runs the long one.
"""
