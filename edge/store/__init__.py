"""One SQLite file (WAL) for everything the gate keeps: SPEC §6."""
from edge.store.db import Store, StoreError, dict_rows

__all__ = ["Store", "StoreError", "dict_rows"]
