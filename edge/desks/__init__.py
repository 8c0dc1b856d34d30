"""The front desks: walk-in registration (P13, P4) and contractors' permits (P14)."""
