"""`gatekeeper run`: wires config, store, gate, readers and outputs, in one flat list of start steps."""
from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sqlite3
import sys
import time
from functools import partial
from pathlib import Path

from drivers.interfaces import CredentialSource, LinkState, Presentation
from drivers.registry import make_source, source_class
from edge.config import GateConfig, resolve
from edge.hardware.devices import DeviceBoard
from edge.hardware.fireline import FireLine
from edge.core import alarms
from edge.core.gate import Gate
from edge.core.outcome import Outcome
from edge.passes.keyring import build_keyring
from edge.core.model import Direction
from edge.hardware.outputs import Outputs
from edge.runtime.doorfirst import DoorFirst
from edge.runtime.handoff import Handoff
from edge.runtime.sdnotify import notify, watchdog_interval
from edge.store import Store
from edge.store.checkpointer import Checkpointer
from edge.runtime.threads import post

CLOCK_CHECK_EVERY_S = 2.0  # P3: how often the wall clock is compared with the steady one
CLOCK_SYNC_EVERY_S = 60.0  # how often the machine's time sync is read (timedatectl, adjtimex)
TOUR_CHECK_EVERY_S = 2.0  # P21: how often rounds are checked against their windows and limits

log = logging.getLogger(__name__)
decisions_log = logging.getLogger("gatekeeper.decisions")


class Daemon:
    def __init__(self, cfg: GateConfig, base: Path, path: Path | None = None):
        self.cfg = cfg
        self.base = base
        self.path = path  # the config file, read again on SIGHUP
        self.stop = asyncio.Event()
        self.queue: Handoff[Presentation] = Handoff(maxsize=10_000)
        self.link = None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        # 1. the database and the gate
        self.store = Store(resolve(self.base, self.cfg.storage.path))
        self.doors = DoorFirst()
        self.store.announce_via = self.doors.later
        self.checkpoints = Checkpointer(self.store.path)  # off the scans' commits
        self.checkpoints.start(self.store.conn)
        from edge.runtime.runfile import RunFile
        self.runfile = RunFile(self.store.path)  # `gatekeeper status` knows we run, and where the API is
        if not self.runfile.hold(api=None):
            log.error("another daemon holds %s: two daemons on one database", self.runfile.path)
        self.gate = Gate(self.cfg, self.store, build_keyring(self.cfg, self.base, self.store))
        self.board = DeviceBoard(self.gate.record)
        si = self.cfg.site_inputs
        self.fire_line = FireLine(self.board) if si and si.fire_trouble_input is not None else None  # P28
        self.gate.reload_keys = self._reload_keys
        if self.cfg.pin is not None:  # P34: the site's PIN pepper, read once; never logged
            self.gate.pin_pepper = read_pepper(self.cfg, self.base)
        # the front desk: walk-ins signed with the gate's own key (P13), contractors' permits (P14)
        self.desk = None
        if self.cfg.walkin is not None:
            from edge.desks.walkin import Desk
            self.desk = Desk(self.cfg, self.base, self.gate)
            self._reload_keys()
        from edge.desks.permits import PermitDesk
        self.permits = PermitDesk(self.cfg, self.gate)
        from edge.desks.tours import Tours
        self.tours = Tours(self.cfg, self.gate)  # P21: checkpoint readers' taps and the nightly rounds
        # 2. the central link, when configured: the outbox starts from where the broker last acknowledged
        self.link = None
        if self.cfg.mqtt is not None:
            from edge.link.central import CentralLink
            self.link = CentralLink(self.cfg, self.base, self.gate, self.board, self._reload_keys)
            if self.desk:
                self.link.own_key = (self.desk.kid, self.desk.public_pem)
            self.link.start(loop)
        # 3. outputs: every lock driven to locked before any reader is listened to (P18)
        self.outputs = Outputs(self.cfg, self.board, self._on_inputs, self.gate.record,
                               lambda: self.gate.modes.fire, self._on_passage, self._on_collector)
        self.gate.door_ready = self.outputs.ready
        self.gate.interlock, self.gate.interlock_claim = self.outputs.interlock.blocking, self.outputs.interlock.claim
        tasks = [asyncio.create_task(m.run(self.stop), name=f"io:{n}") for n, m in self.outputs.modules.items()]
        await _first_attempts([m.attempted for m in self.outputs.modules.values()],
                              max((m.timeout_s for m in self.cfg.io_modules), default=1.0) * 2 + 1)
        # 4. readers, feeding one queue
        self.readers: dict[str, CredentialSource] = {}
        self.reader_reported: dict[str, asyncio.Event] = {}
        for r in self.cfg.readers:
            self.board.register(r.name, r.type if r.type != "serial" else "reader")
            self.reader_reported[r.name] = asyncio.Event()
            # P21: a checkpoint reader's taps go to the tours, not the decision queue: no door, no decision
            taps = self._tap if r.checkpoint else self._enqueue
            self.readers[r.name] = make_reader(r, self.base, loop, taps, self._reader_state)
        readers = list(self.readers.values())
        for rd in readers:
            rd.start()
        tasks.append(asyncio.create_task(self._decide_loop(), name="decide"))
        tasks.append(asyncio.create_task(self._maintenance(), name="maintenance"))
        tasks.append(asyncio.create_task(self._flush_held(), name="holdback"))
        tasks.append(asyncio.create_task(self._watch_clock(), name="clock"))
        tasks.append(asyncio.create_task(self._watch_overstays(), name="overstays"))
        if any(d.kind == "turnstile" for d in self.cfg.doors):
            tasks.append(asyncio.create_task(self._expire_passages(), name="passages"))
        if any(r.keypad for r in self.cfg.readers):  # P34: a card whose PIN does not come is refused on time
            tasks.append(asyncio.create_task(self._expire_pins(), name="pins"))
        if self.cfg.tours:
            tasks.append(asyncio.create_task(self._watch_tours(), name="tours"))
        if self.link:
            tasks.append(asyncio.create_task(self.link.run(self.stop), name="central-link"))
        api = self.api = None
        if self.cfg.api is not None:
            from edge.api.facade import GateServices
            from edge.api.host import ApiService
            services = GateServices(cfg=self.cfg, gate=self.gate, board=self.board, link=self.link, desk=self.desk,
                                    permits=self.permits, open_door=self.open_door, stop=self.stop,
                                    tours=self.tours)
            api = self.api = ApiService(services, self.cfg.api, self.base, self.board, self.doors.later)
            tasks.append(asyncio.create_task(api.run(self.stop), name="api"))
            await _first_attempts([api.attempted], 5.0)
            if api.port:
                from edge.runtime.runfile import api_url
                scheme = "https" if self.cfg.api.tls_cert_file else "http"
                self.runfile.update(api=api_url(scheme, self.cfg.api.bind, api.port))
        await _first_attempts(list(self.reader_reported.values()), 3.0)
        # 5. ready: every part has started or is a named fault being retried; decisions go on either way
        notify("READY=1\nSTATUS=serving")
        loop.add_signal_handler(signal.SIGHUP, self._reload_config)  # ignored until now: nothing to reload yet
        wd = watchdog_interval()
        if wd:  # systemd watches from READY on
            tasks.append(asyncio.create_task(self._watchdog(wd), name="watchdog"))
        log.info("gatekeeper %s/%s ready: %d doors, %d readers, mode %s", self.cfg.site.id, self.cfg.site.gate,
                 len(self.cfg.doors), len(readers), self.gate.mode.value)
        print(f"gatekeeper ready: site {self.cfg.site.id} gate {self.cfg.site.gate}", flush=True)
        # What exists now (config, app, caches) lives as long as the daemon: out of the cyclic collector's
        # sight, a full collection no longer walks it, and never stalls a scan for milliseconds
        gc.freeze()
        await self.stop.wait()
        notify("STOPPING=1")
        self.board.stopping = True  # what goes down from here on is us stopping, not a fault
        if api is not None:
            api.stop()
        for rd in readers:
            rd.stop()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for m in self.outputs.modules.values():
            await m.shutdown()
        if self.link:
            self.link.stop()
        # SPEC §6: what the database still refuses is written now or counted for the next start
        lost = self.gate.holdback.close(self.store.tx)
        try:
            self.gate.watch_overstays(due=False)  # P36: the last second's entries, so no restart needs the journal
        except sqlite3.Error as e:
            log.warning("overstay watch: the last entries are read again from the journal at the next start: %s", e)
        try:
            self.store.flush_deferred()
        except sqlite3.Error as e:
            log.warning("the last restart hints were not saved: %s", e)
        self.checkpoints.stop()
        self.store.close()
        self.runfile.release()
        return 1 if lost else 0

    async def open_door(self, door: str, direction: str = "in", grant_seq: int | None = None,
                        cause: str = "grant", extended: bool = False) -> bool:
        """Drive a door's output once (`extended`: for the door's extended time, P30). When it cannot be (a
        module down, a write refused), the journal says so next to the grant (P18, P19): `alarm.raised`
        `output_failed` naming the grant's seq."""
        if await self.outputs.pulse(door, direction, extended=extended):
            return True
        self.gate.record("alarm.raised", {"alarm": "output_failed", "priority": "high", "door": door,
                                          "direction": direction, "cause": cause, "grant_seq": grant_seq,
                                          "error": self.outputs.failure(door)[:200]})
        return False

    def _enqueue(self, p: Presentation) -> None:
        if not self.queue.put(p):
            log.error("reader %s: scan dropped, the decision queue is full", p.reader)

    def _tap(self, p: Presentation) -> None:
        """P21: a patrol tap, journaled with what it does to tonight's rounds; the reader shows whether it counted."""
        if p.kind == "pin":  # P34: a PIN is nobody's tap (and its digits go nowhere)
            log.info("checkpoint %s: a PIN typed at a patrol reader: ignored", p.reader)
            return
        try:
            counted, _ = self.tours.tap(p.reader, p.kind, p.value)
        except Exception:  # a bug must not stop the gate
            log.exception("checkpoint %s: tap not recorded", p.reader)
            return
        self.readers[p.reader].feedback(counted)

    async def _watch_tours(self) -> None:
        """P21: rounds not started in their window and rounds over their limit, looked for every few seconds."""
        while True:
            try:
                self.tours.tick()
            except Exception:
                log.exception("tours: the rounds could not be checked")
            await asyncio.sleep(TOUR_CHECK_EVERY_S)

    def _reader_state(self, name: str, state: LinkState, error: str | None) -> None:
        self.reader_reported[name].set()
        if state is LinkState.UP:
            self.board.up(name)
        else:
            self.board.down(name, error or "disconnected")

    async def _decide_loop(self) -> None:
        while True:
            p: Presentation = await self.queue.get()
            # the door first: one durable commit and the coil write are the scan's path; the outbox, the API
            # and its live feed wait until the lock is driven, then come the reader's feedback and the log
            with self.doors.scan():
                try:
                    out = self.gate.present(p.reader, p.kind, p.value)
                except Exception:  # a bug must not stop the gate; the scan is logged and dropped
                    log.exception("reader %s: scan could not be decided", p.reader)
                    continue
                if out is not None and out.opens:
                    grant = next((e.seq for e in out.entries if e.type == "access.granted"), None)
                    await self.open_door(out.door.name, out.door.direction.value, grant,
                                         extended=self.gate.extended(out.cred))
            if out is None:  # P34: a card now waiting for its PIN (shown "enter PIN" where the reader can), or a
                if p.kind != "pin" and self.gate.pin_waiting(p.reader):  # PIN no card waited for
                    prompt = getattr(self.readers[p.reader], "prompt_pin", None)
                    if prompt is not None:
                        prompt()
                continue
            self.readers[p.reader].feedback(out.opens)  # a no-op where the reader shows nothing
            _log_outcome(out)

    async def _on_passage(self, lane: str, direction: str) -> None:
        """P11: a person through a turnstile lane; the lane is released again while the grant admits more."""
        _entries, more = self.gate.passage(lane, Direction(direction))
        if more:
            await self.open_door(lane, direction, cause="passage")

    async def _on_collector(self, door: str) -> None:
        """P27: the door's card collector captured a card: the exit held for it opens once."""
        from edge.core.cards import captured
        try:
            taken = captured(self.gate, door)
        except Exception:  # a bug must not stop the gate
            log.exception("door %s: the captured card was not recorded", door)
            return
        if taken is not None:
            _ref, view = taken
            self.gate.interlock_claim(view.name)  # P32: the mantrap's other doors wait for this opening
            await self.open_door(view.name, view.direction.value, cause="card_returned")

    def _reload_keys(self) -> None:
        """Trusted keys changed through sync (`keys_add`/`keys_remove`): config keys always stay."""
        self.gate.keyring = build_keyring(self.cfg, self.base, self.store, self._own_key())

    def _own_key(self) -> tuple[str, str] | None:
        """The walk-in desk's own signing key (kid, public key), trusted beside the config's and the synced."""
        return (self.desk.kid, self.desk.public_key) if self.desk else None

    def _reload_config(self) -> None:
        """SIGHUP: what can change while running does (trusted keys and their files, schedules, the log);
        a change that needs a restart is named; a config that no longer reads changes nothing. Never fatal."""
        from edge.config import ConfigError
        from edge.config.reload import read_again
        from edge.core.outcome import settings_from
        from edge.runtime import logsetup
        notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            r = read_again(self.path, self.cfg, self.gate.keyring, self.store, self._own_key())
        except ConfigError as e:
            log.error("SIGHUP: %s not reloaded, the running config stays: %s", self.path, "; ".join(e.problems))
        except Exception:  # whatever it is, the doors go on with what they have
            log.exception("SIGHUP: %s not reloaded, the running config stays", self.path)
        else:
            self.cfg = self.gate.cfg = r.cfg
            if self.link:
                self.link.cfg = r.cfg  # the config's kids are the central system's own
            self.gate.keyring = r.keyring
            self.gate.settings = settings_from(r.cfg, self.store.calendar)  # P24: with the synced calendar
            logsetup.configure(r.cfg.log.level, r.cfg.log.format, r.cfg.log.wire)
            if self.api is not None:
                self.api.log_changed()
            log.info("SIGHUP: %s reloaded; changed: %s; trusted keys: %s", self.path, ", ".join(r.live) or "nothing",
                     " ".join(r.keys) or "unchanged")
            if r.restart:
                log.warning("SIGHUP: these changes need a restart to take effect: %s", ", ".join(r.restart))
        notify("READY=1\nSTATUS=serving")

    def _on_inputs(self, values: dict[str, bool]) -> None:
        """The site inputs as read (P15 key switch, P16 fire panel): the gate's mode follows them. P28: the
        fire input is not believed while the panel reports its line in fault."""
        fire = values.get("fire")
        if self.fire_line is not None:
            fire = self.fire_line.read(fire, values.get("fire_trouble"))
        self.gate.modes.inputs(fire, values.get("lockdown"))

    async def _flush_held(self) -> None:
        """SPEC §6: writes held while the database could not take them go in as soon as it can."""
        while True:
            await asyncio.sleep(1.0)
            if self.gate.holdback.held or self.gate.holdback.since_error:
                self.gate.holdback.flush(self.store.tx)

    async def _maintenance(self) -> None:
        while True:
            cutoff = time.time() - self.cfg.storage.retention_days * 86400
            # never prune what the broker has not acknowledged yet: the journal is the outbox
            keep_from = self.link.outbox.acked + 1 if self.link else None
            try:
                n = self.gate.journal.prune(cutoff, keep_from)
                # P19: visitors' and contractors' records (names, companies) are kept no longer than the journal
                with self.store.tx() as c:
                    n += c.execute("DELETE FROM visits WHERE valid_until < ?", (cutoff,)).rowcount
                    n += c.execute("DELETE FROM permits WHERE returned < ?", (cutoff,)).rowcount
                    n += alarms.prune(c)
                    # P36: the raised overstays of people since gone
                    n += c.execute("DELETE FROM overstays WHERE raised IS NOT NULL AND credential NOT IN"
                                   " (SELECT credential FROM presence)").rowcount
            except sqlite3.Error as e:  # a full disk: pruning waits for the next round
                log.warning("retention: the database refused the pruning: %s", e)
                n = 0
            if n:
                log.info("pruned %d journal entries and records older than %d days", n,
                         self.cfg.storage.retention_days)
            await asyncio.sleep(3600)

    async def _watch_clock(self) -> None:
        """P3: the wall clock watched for jumps every few seconds (a jump is journaled once), and the
        machine's time sync read now and then, off the loop (a process or a system call)."""
        from edge.runtime import timesync
        next_sync = 0.0
        while True:
            self.gate.watch_clock()
            if time.monotonic() >= next_sync:
                next_sync = time.monotonic() + CLOCK_SYNC_EVERY_S
                try:
                    self.gate.clock_sync = await asyncio.to_thread(timesync.read)
                except Exception as e:  # never the daemon: the state is then unknown
                    log.warning("cannot read the clock's sync state: %s", e)
            await asyncio.sleep(CLOCK_CHECK_EVERY_S)

    async def _watch_overstays(self) -> None:
        """P36: the entries noted by the scans go into the watch within a second (off the scan path); who is still
        on site past the end of their pass or permit is read from an index every `overstay_check_s`."""
        every = self.cfg.policy.overstay_check_s
        step = min(1.0, every)
        next_due = time.monotonic() + every
        while True:
            await asyncio.sleep(step)
            due = time.monotonic() >= next_due
            if due:
                next_due = time.monotonic() + every
            try:
                self.gate.watch_overstays(due=due)
            except sqlite3.Error as e:  # the next tick tries again
                log.warning("overstay watch: %s", e)

    async def _expire_passages(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            self.gate.expire_passages()

    async def _expire_pins(self) -> None:
        """P34: a card whose PIN did not come within 10 s is refused `pin_required`, and the reader says so."""
        while True:
            await asyncio.sleep(0.5)
            try:
                outs = self.gate.expire_pins()
            except Exception:  # a bug must not stop the gate
                log.exception("the cards waiting for their PIN could not be ended")
                continue
            for out in outs:
                self.readers[out.reader].feedback(out.opens)
                _log_outcome(out)

    async def _watchdog(self, every: float) -> None:
        # Fed from the loop itself: if the loop stalls, systemd restarts us.
        while True:
            notify("WATCHDOG=1")
            await asyncio.sleep(every)


async def _first_attempts(events: list[asyncio.Event], timeout: float) -> None:
    """Wait until each part has tried once (connected, or failed and is being retried), within a bound."""
    if events:
        try:
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), timeout)
        except asyncio.TimeoutError:
            pass  # still trying: it reports its state when it knows, the doors do not wait for it


def make_reader(r, base: Path, loop: asyncio.AbstractEventLoop, on_presentation, on_state) -> CredentialSource:
    """The driver for one configured reader, its callbacks run on the loop. A serial line is read by the
    loop itself and calls back there, unwrapped (no hand-over between threads on a scan's path); a camera
    and an OSDP reader run on threads of their own, so their callbacks are posted to the loop."""
    if not source_class(r).on_loop:
        on_presentation, on_state = partial(post, loop, on_presentation), partial(post, loop, on_state)
    # the key file is named relative to the config's folder, which only the core knows
    scbk = bytes.fromhex(resolve(base, r.scbk_file).read_text().strip()) if r.scbk_file else None
    return make_source(r, on_presentation=on_presentation, on_state=on_state, loop=loop, scbk=scbk)


def read_pepper(cfg: GateConfig, base: Path) -> bytes:
    """P34: the site's PIN pepper from its file (or systemd credential); ConfigError naming the file, never its bytes."""
    from edge.config import ConfigError
    try:
        pepper = resolve(base, cfg.pin.pepper_file).read_bytes().strip()
    except OSError as e:
        raise ConfigError([f"pin.pepper_file: {cfg.pin.pepper_file}: {e.strerror or e}"]) from None
    if len(pepper) < 16:
        raise ConfigError([f"pin.pepper_file: {cfg.pin.pepper_file} holds {len(pepper)} bytes: the pepper needs"
                           " at least 16"])
    return pepper


def _log_outcome(out: Outcome) -> None:
    d = out.decision
    verdict = "HELD" if d.held else ("GRANTED" if d.granted else "DENIED")
    cred = out.cred
    who = getattr(cred, "holder", None) or getattr(cred, "ref", None) or "-"
    decisions_log.info("%s %s %s %s reason=%s%s", out.door.name, out.door.direction.value, verdict, who, d.reason,
                       f" flags={','.join(d.flags)}" if d.flags else "")


def run(cfg: GateConfig, base: Path, path: Path | None = None) -> int:
    # The loop gives up the interpreter lock on every SQLite step and socket call; the reader threads and
    # paho's network thread then keep it for up to the switch interval (5 ms by default), which would
    # show in every decision's latency and throttle the outbox. 0.5 ms keeps the loop responsive.
    sys.setswitchinterval(0.0005)
    from edge.runtime import lograte
    lograte.install()
    _raise_open_files_limit()
    try:
        return asyncio.run(Daemon(cfg, base, path).run())
    finally:  # the closed loop gave SIGHUP its default back, which would end a stopping daemon as killed
        signal.signal(signal.SIGHUP, signal.SIG_IGN)


def _raise_open_files_limit() -> None:
    """As many descriptors as the service is allowed (the unit's LimitNOFILE): the soft limit is often
    lower than the hard one. The API's own connection limit keeps it far from either."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
