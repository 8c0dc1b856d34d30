"""The central link (SPEC §2): events out through a durable outbox, allow-list and site messages in."""
