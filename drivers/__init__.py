"""Hardware drivers: serial readers and I/O modules. They know bytes and registers, never the policy.

Nothing here imports `edge`: the core depends on the drivers, not the other way round.
"""
