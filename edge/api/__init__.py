"""The local API (SPEC §4): guards, supervisors and the central system, with tokens and roles."""
