"""Numbered schema migrations; `PRAGMA user_version` says which have run."""


def _counted(counter: str, *tables: str) -> str:
    """Triggers that move `counter` in `versions` at every change to `tables`, whoever makes it."""
    return "".join(f"CREATE TRIGGER {t}_{op[0].lower()} AFTER {op} ON {t} "
                   f"BEGIN UPDATE versions SET n=n+1 WHERE name='{counter}'; END;\n"
                   for t in tables for op in ("INSERT", "UPDATE", "DELETE"))


MIGRATIONS: list[str] = [
    # 1: the allow-list cache, lists, presence, journal.
    """
    CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE credentials(
        credential TEXT PRIMARY KEY, holder TEXT NOT NULL, category TEXT NOT NULL, tier TEXT,
        roles TEXT NOT NULL DEFAULT '', areas TEXT NOT NULL, valid_from REAL, valid_until REAL,
        schedule TEXT, party INTEGER NOT NULL DEFAULT 1, host TEXT, escort INTEGER NOT NULL DEFAULT 0,
        id_hash TEXT
    ) WITHOUT ROWID;
    CREATE TABLE revocations(ref TEXT PRIMARY KEY, at REAL NOT NULL) WITHOUT ROWID;
    CREATE TABLE blocklist(kind TEXT NOT NULL, value TEXT NOT NULL, reason TEXT, PRIMARY KEY(kind, value)) WITHOUT ROWID;
    CREATE TABLE keys(kid TEXT PRIMARY KEY, public_key TEXT NOT NULL, scope TEXT) WITHOUT ROWID;
    CREATE TABLE presence(
        credential TEXT PRIMARY KEY, holder TEXT NOT NULL, category TEXT NOT NULL,
        area TEXT NOT NULL, since REAL NOT NULL, party INTEGER NOT NULL DEFAULT 1
    ) WITHOUT ROWID;
    CREATE TABLE consumed(visit TEXT PRIMARY KEY, at REAL NOT NULL) WITHOUT ROWID;
    CREATE TABLE signoffs(visit TEXT PRIMARY KEY, host TEXT, at REAL NOT NULL) WITHOUT ROWID;
    CREATE TABLE journal(
        seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, time TEXT NOT NULL, type TEXT NOT NULL,
        data TEXT NOT NULL, hash TEXT NOT NULL
    );
    """,
    # 2: the central link: the last event applied from each peer gate (global anti-passback, P7/P8).
    """
    CREATE TABLE peers(source TEXT NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL,
                       PRIMARY KEY(source, epoch)) WITHOUT ROWID;
    """,
    # 3: API tokens, stored as hashes only (a token is shown once, when it is made).
    """
    CREATE TABLE tokens(id TEXT PRIMARY KEY, person TEXT NOT NULL, role TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
                        created REAL NOT NULL, revoked REAL) WITHOUT ROWID;
    """,
    # 4: the gate's own records (P13 walk-ins, P14 permits, P4 amendments) and peer gates' walk-in keys.
    # These are the gate's, not the allow-list's: a snapshot from the central system never replaces them.
    """
    CREATE INDEX credentials_holder_a ON credentials(holder);
    CREATE TABLE visits(
        id TEXT PRIMARY KEY, holder TEXT NOT NULL, pass TEXT NOT NULL, pass_ref TEXT NOT NULL,
        name TEXT NOT NULL, company TEXT NOT NULL, purpose TEXT NOT NULL, host TEXT NOT NULL,
        host_confirmation TEXT NOT NULL, id_hash TEXT NOT NULL, id_last4 TEXT NOT NULL, areas TEXT NOT NULL,
        party INTEGER NOT NULL, valid_from REAL NOT NULL, valid_until REAL NOT NULL, guard TEXT NOT NULL,
        created REAL NOT NULL, entered REAL, exited REAL
    ) WITHOUT ROWID;
    CREATE TABLE local_revocations(ref TEXT PRIMARY KEY, at REAL NOT NULL, by TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE permits(
        id TEXT PRIMARY KEY, credential TEXT NOT NULL, holder TEXT NOT NULL, name TEXT NOT NULL,
        company TEXT NOT NULL, areas TEXT NOT NULL, valid_from REAL NOT NULL, valid_until REAL NOT NULL,
        deposit REAL NOT NULL, currency TEXT NOT NULL, created REAL NOT NULL, created_by TEXT NOT NULL,
        returned REAL, refunded REAL, returned_by TEXT
    ) WITHOUT ROWID;
    CREATE INDEX permits_credential ON permits(credential);
    CREATE TABLE gate_keys(kid TEXT PRIMARY KEY, public_key TEXT NOT NULL, gate TEXT NOT NULL, at REAL NOT NULL) WITHOUT ROWID;
    """,
    # 5: exits held for a host's sign-off (P9) survive a restart, so a guard can still release them.
    """
    CREATE TABLE held_exits(visit TEXT PRIMARY KEY, reader TEXT NOT NULL, credential TEXT NOT NULL,
                            at REAL NOT NULL) WITHOUT ROWID;
    """,
    # 6: counters that every writer of the lists a scan reads from memory moves, whatever process it is (an
    # import, the sync worker, a tool): the gate reloads only what another process changed.
    """
    CREATE TABLE versions(name TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO versions(name, n) VALUES('lists', 0), ('keys', 0);
    """ + _counted("lists", "revocations", "local_revocations", "blocklist") + _counted("keys", "keys", "gate_keys"),
    # 7: the same for the gate's own state, which a tool or another process may write too.
    """
    INSERT INTO versions(name, n) VALUES('state', 0);
    """ + _counted("state", "consumed", "signoffs", "presence", "permits"),
    # 8: the allow-list record's display name (SPEC §2 `name`); records stored before it read as null. Adding a
    # nullable column rewrites nothing, however large the cache. The guard's screens look people up by holder in
    # the gate's own records too.
    """
    ALTER TABLE credentials ADD COLUMN name TEXT;
    CREATE INDEX visits_holder ON visits(holder);
    CREATE INDEX permits_holder ON permits(holder);
    """,
    # 9: alarms a guard acknowledges (P17, P18, P19) and people a guard marked safe at the muster (P16).
    # A trigger fills `alarms` from the journal, so an alarm another process journals (an import) is listed
    # too and a scan writes nothing more; the event's data is copied so an open alarm outlives the journal's
    # retention. Alarms journaled before this migration are not listed: nobody could acknowledge them then.
    # A mark goes with the presence row it was made on: a person who badges out is no longer accounted for.
    """
    CREATE TABLE alarms(seq INTEGER PRIMARY KEY, type TEXT NOT NULL, time TEXT NOT NULL, data TEXT NOT NULL,
                        acked_at REAL, acked_by TEXT);
    CREATE INDEX alarms_open ON alarms(seq) WHERE acked_at IS NULL;
    CREATE TRIGGER journal_alarms AFTER INSERT ON journal
        WHEN NEW.type IN ('alarm.raised', 'door.forced', 'door.held_open', 'device.fault')
        BEGIN INSERT OR IGNORE INTO alarms(seq, type, time, data) VALUES(NEW.seq, NEW.type, NEW.time, NEW.data); END;
    CREATE TABLE muster_safe(credential TEXT PRIMARY KEY, holder TEXT NOT NULL, by TEXT NOT NULL, at REAL NOT NULL,
                             seq INTEGER) WITHOUT ROWID;
    CREATE TRIGGER presence_left_muster AFTER DELETE ON presence
        BEGIN DELETE FROM muster_safe WHERE credential=OLD.credential; END;
    CREATE INDEX visits_id_hash ON visits(id_hash, created);
    """,
    # 10: the site calendar from the allow-list sync (P24): holidays and swapped working days, by site local
    # date; a counter of its own tells the gate to make its day maps again.
    """
    CREATE TABLE calendar(date TEXT PRIMARY KEY, kind TEXT NOT NULL, as_day TEXT) WITHOUT ROWID;
    INSERT INTO versions(name, n) VALUES('calendar', 0);
    """ + _counted("calendar", "calendar"),
    # 11: private guests (P29) and extended access (P30) on allow-list records; a blocklist entry's action (P37:
    # `alert` grants and raises `watchlist`); the visitors and contractors this gate let in, watched for an overstay
    # (P36): one row per credential, its deadline indexed while it is not yet raised, so the watch reads only
    # what is due. Nullable or defaulted columns: nothing is rewritten, however large the cache.
    """
    ALTER TABLE credentials ADD COLUMN private INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE credentials ADD COLUMN extended_access INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE blocklist ADD COLUMN action TEXT NOT NULL DEFAULT 'deny';
    CREATE TABLE overstays(credential TEXT PRIMARY KEY, holder TEXT NOT NULL, category TEXT NOT NULL, host TEXT,
                           visit TEXT, area TEXT NOT NULL, door TEXT NOT NULL, entered REAL NOT NULL,
                           deadline REAL NOT NULL, raised REAL, seq INTEGER) WITHOUT ROWID;
    CREATE INDEX overstays_due ON overstays(deadline) WHERE raised IS NULL;
    """,
    # 12: visitor cards (P27): a record's `temporary`; why an exit is held (P9 sign-off or P27 card), so a guard
    # still sees "take the card" after a restart. Defaulted or nullable: nothing is rewritten.
    """
    ALTER TABLE credentials ADD COLUMN temporary INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE held_exits ADD COLUMN reason TEXT;
    """,
    # 13: vehicles (P26): plates a guard registered to a visit (covered while the visit's pass is), and plates held
    # for the guard at a barrier, so a car waiting there is still shown after a restart.
    """
    CREATE TABLE vehicles(plate TEXT PRIMARY KEY, visit TEXT NOT NULL, at REAL NOT NULL, actor TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE held_vehicles(plate TEXT PRIMARY KEY, reader TEXT NOT NULL, reason TEXT NOT NULL,
                               at REAL NOT NULL) WITHOUT ROWID;
    """,
    # 14: timed anti-passback (P31): the last entry of a credential through a timed door, written with its grant, so
    # a restart lets nobody in again early; rows past the door's time are deleted as new entries come.
    """
    CREATE TABLE timed_entries(door TEXT NOT NULL, credential TEXT NOT NULL, at REAL NOT NULL,
                               PRIMARY KEY(door, credential)) WITHOUT ROWID;
    """,
    # 15: card and PIN (P34): a record's `pin_required` and its PIN and duress PIN hashes (defaulted or nullable:
    # nothing is rewritten); the wrong PINs given at this gate's keypads, so a restart does not forget a lockout.
    """
    ALTER TABLE credentials ADD COLUMN pin_required INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE credentials ADD COLUMN pin_hash TEXT;
    ALTER TABLE credentials ADD COLUMN duress_hash TEXT;
    CREATE TABLE pin_failures(credential TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY(credential, at)) WITHOUT ROWID;
    """,
    # 16: occupancy limits (P35): a supervisor's correction of an area's count, kept as the offset from what
    # presence says, so it outlives a restart (presence itself is stored); the last correction's who and why.
    """
    CREATE TABLE occupancy_offsets(area TEXT PRIMARY KEY, adjust INTEGER NOT NULL, at REAL NOT NULL, actor TEXT,
                                   reason TEXT) WITHOUT ROWID;
    """,
]
