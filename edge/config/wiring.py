"""What one section cannot see alone: names that refer to other sections, and wiring that cannot work (two
doors on one coil, two readers on one serial line). Read from the parsed TOML, not the validated model, so a
field error elsewhere does not hide these: `--check` says everything at once."""
from __future__ import annotations

import os
from collections.abc import Iterator

from edge.core.areas import is_within, parent_of

Problem = tuple[tuple, str]  # (key path, message)

# the outputs and inputs of a door, by what each is on its I/O module
COILS = ("lock_coil", "pass_in_coil", "pass_out_coil", "free_coil")
INPUTS = ("contact_input", "rex_input", "passage_in_input", "passage_out_input", "collector_input",  # P27
          "loop_input")  # P26
SITE_INPUTS = ("fire_input", "lockdown_input", "fire_trouble_input")


def entries(raw: dict, table: str) -> Iterator[tuple[int, dict]]:
    items = raw.get(table)
    if isinstance(items, list):
        for i, e in enumerate(items):
            if isinstance(e, dict):
                yield i, e


def _name(e: dict) -> str | None:
    n = e.get("name")
    return n if isinstance(n, str) else None


def _int(v) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def references(raw: dict) -> list[Problem]:
    """Names used twice, and names that point at nothing (or at something of another kind)."""
    out: list[Problem] = []
    tree = (raw.get("areas") or {}).get("tree") if isinstance(raw.get("areas"), dict) else None
    areas = {a for a in tree if isinstance(a, str)} if isinstance(tree, list) else None
    names: dict[str, set[str]] = {}
    for table, key in (("io_modules", "name"), ("doors", "name"), ("readers", "name"), ("keys", "kid")):
        seen: dict[str, int] = {}
        for i, e in entries(raw, table):
            n = e.get(key)
            if not isinstance(n, str):
                continue
            if n in seen:
                out.append(((table, i, key), f"{n!r} is also the {key} of {table}[{seen[n]}]"))
            else:
                seen[n] = i
        names[table] = set(seen)
    modules, doors = names["io_modules"], names["doors"]
    kinds = {n: t for t in ("io_modules", "readers") for n in names[t]}
    relay_boards = {_name(m) for _, m in entries(raw, "io_modules") if m.get("type") == "relay_serial"}
    for i, d in entries(raw, "doors"):
        area = d.get("area")
        if areas is not None and isinstance(area, str) and area not in areas:
            out.append((("doors", i, "area"), f"{area!r} is not in areas.tree"))
        io = d.get("io")
        if isinstance(io, str) and io not in modules:
            out.append((("doors", i, "io"), f"{io!r} is not an io_modules name"))
        elif isinstance(io, str) and io in relay_boards:
            if d.get("kind", "door") != "door":
                out.append((("doors", i, "kind"), f"a {d.get('kind')} cannot be on relay board {io!r}: "
                            "a relay board only switches outputs"))
            for key in ("contact_input", "rex_input", "collector_input"):
                if d.get(key) is not None:
                    out.append((("doors", i, key), f"relay board {io!r} has no inputs"))
            if _int(d.get("lock_coil")) == 0:
                out.append((("doors", i, "lock_coil"), "a relay board's channels start at 1"))
    out += _two_person_lanes(raw)  # P33
    for i, r in entries(raw, "readers"):
        if not isinstance(r.get("door"), str):
            continue
        door = r["door"]
        if door in doors:
            continue
        if door in kinds:  # a reader names the door it admits through; an I/O module or a reader is not one
            what = "an I/O module" if kinds[door] == "io_modules" else "a reader"
            out.append((("readers", i, "door"), f"{door!r} is {what}, not a door: name one of [[doors]]"))
        else:
            out.append((("readers", i, "door"), f"{door!r} is not a doors name"))
    si = raw.get("site_inputs")
    if isinstance(si, dict) and isinstance(si.get("io"), str):
        if si["io"] not in modules:
            out.append((("site_inputs", "io"), f"{si['io']!r} is not an io_modules name"))
        elif si["io"] in relay_boards:
            out.append((("site_inputs", "io"), f"{si['io']!r} is a relay board, which has no inputs"))
    policy = raw.get("policy")
    if isinstance(policy, dict) and areas is not None:
        for key in ("lobby", "guard_room"):
            a = policy.get(key)
            if isinstance(a, str) and a not in areas:
                out.append((("policy", key), f"{a!r} is not in areas.tree"))
    if isinstance(tree, list) and areas is not None:
        out += _tree(raw, tree, areas)
    from edge.config.calendars import references as calendar_references
    out += calendar_references(raw)  # P24
    from edge.config.tours import tour_references
    out += tour_references(raw, entries)  # P21
    from edge.config.occupancy import occupancy_references
    out += occupancy_references(raw, areas, entries)  # P35
    out += pin_references(raw)  # P34
    from edge.config.interlock import interlock_references
    out += interlock_references(raw, entries)  # P32
    walkin, site = raw.get("walkin"), raw.get("site")
    if isinstance(walkin, dict) and isinstance(site, dict):
        kid = walkin.get("kid") or (f"{site.get('gate')}-w"[:16] if isinstance(site.get("gate"), str) else None)
        # the gate's own key and a central key under one kid: one of them would never verify
        if isinstance(kid, str) and kid in names["keys"]:
            out.append((("walkin", "kid"), f"{kid!r} is also the kid of a key in [[keys]]"))
    return out


def _two_person_lanes(raw: dict) -> list[Problem]:
    """P33: a pair is admitted with one opening of a door; a turnstile lane or a barrier lets one through a pass."""
    listed = raw["areas"].get("two_person") if isinstance(raw.get("areas"), dict) else None
    if not isinstance(listed, list):
        return []
    marked = [a for a in listed if isinstance(a, str)]
    out: list[Problem] = []
    for i, d in entries(raw, "doors"):
        area, kind = d.get("area"), d.get("kind", "door")
        if kind != "door" and isinstance(area, str) and any(is_within(area, a) for a in marked):
            out.append((("doors", i, "kind"), f"{area!r} is a two-person area (P33): its doors admit a pair with one"
                        f" opening, which a {kind} cannot: make it a door or leave the area out of two_person"))
    return out


def pin_references(raw: dict) -> list[Problem]:
    """P34: every `in` reader of a PIN door has a keypad, and a gate with keypads has the site's PIN pepper."""
    out: list[Problem] = []
    pin_doors = {_name(d) for _, d in entries(raw, "doors") if d.get("pin_required") is True}
    keypads = False
    for i, r in entries(raw, "readers"):
        keypads = keypads or r.get("keypad") is True
        door = r.get("door")
        if isinstance(door, str) and door in pin_doors and r.get("direction") == "in" and r.get("keypad") is not True:
            out.append((("readers", i, "keypad"), f"door {door!r} has pin_required: its `in` reader"
                        f" {_name(r)!r} needs a keypad (keypad = true)"))
    if (keypads or pin_doors) and not isinstance(raw.get("pin"), dict):
        out.append((("pin",), "keypad readers and pin_required doors check PINs with the site's PIN pepper:"
                    " add [pin] pepper_file"))
    return out


def _tree(raw: dict, tree: list, areas: set[str]) -> list[Problem]:
    out: list[Problem] = []
    for a in tree:
        if isinstance(a, str) and (p := parent_of(a)) is not None and p not in areas:
            out.append((("areas", "tree"), f"area {a!r} has no parent {p!r} in the tree"))
    roots = [a for a in tree if isinstance(a, str) and parent_of(a) is None]
    if len(roots) != 1:
        out.append((("areas", "tree"), f"the tree needs exactly one root area, found {roots}"))
    for key in ("escort_required", "two_person"):  # P10, P33
        listed = raw["areas"].get(key)
        for a in listed if isinstance(listed, list) else ():
            if isinstance(a, str) and a not in areas:
                out.append((("areas", key), f"{a!r} is not in the tree"))
    return out


def conflicts(raw: dict) -> list[Problem]:
    """Wiring that cannot work: one coil or input of a module used twice, one serial line opened twice."""
    out: list[Problem] = []
    taken: dict[tuple, tuple] = {}  # (module, "coil"|"input", number) -> the key path that has it

    def claim(module: str, what: str, number: int, loc: tuple, who: str) -> None:
        held = taken.setdefault((module, what, number), (loc, who))
        if held[0] != loc:
            out.append((loc, f"{what} {number} of {module!r} is also {held[1]}: one {what}, one use"))

    for i, d in entries(raw, "doors"):
        io, name = d.get("io"), _name(d) or f"doors[{i}]"
        if not isinstance(io, str):
            continue
        for keys, what in ((COILS, "coil"), (INPUTS, "input")):
            for key in keys:
                n = _int(d.get(key))
                if n is not None:
                    claim(io, what, n, ("doors", i, key), f"door {name}'s {key}")
    si = raw.get("site_inputs")
    if isinstance(si, dict) and isinstance(si.get("io"), str):
        for key in SITE_INPUTS:
            n = _int(si.get(key))
            if n is not None:
                claim(si["io"], "input", n, ("site_inputs", key), f"site_inputs.{key}")
    lines: dict[str, tuple] = {}  # serial device -> the key path that opens it
    for table, key in (("io_modules", "device"), ("readers", "url")):
        for i, e in entries(raw, table):
            dev = e.get(key)
            if not isinstance(dev, str) or (table == "io_modules" and e.get("type", "modbus_tcp") == "modbus_tcp"):
                continue
            if table == "readers" and e.get("type", "serial") not in ("serial", "osdp"):
                continue
            if "://" in dev:  # a serial server on the network (socket://, rfc2217://): it says itself who may connect
                continue
            where = f"{table}[{i}] ({_name(e)})"
            held = lines.setdefault(_device(dev), (where, (table, i, key)))
            if held[1] != (table, i, key):
                out.append(((table, i, key), f"{dev} is also opened by {held[0]}: a serial line has one user"))
    return out


def _device(dev: str) -> str:
    """One name per line: /dev/serial/by-id/... and the /dev/ttyUSB0 it links to are the same line."""
    try:
        return os.path.realpath(dev.strip())
    except ValueError:  # a NUL in the name: a field error says so
        return dev
