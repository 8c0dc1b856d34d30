"""P28: the fire panel's line supervision. A panel wired with a trouble input (its line-fault output) says
when the fire input can no longer be believed: a cut or shorted line reads as "no fire" or as "fire" alike.
While it is in fault the reading is ignored and the gate keeps its last known fire state; the fault is a
`device.fault` of the fire line (a high-priority alarm for the guards), its end a `device.recovered`."""
from __future__ import annotations

import logging

from edge.hardware.devices import DeviceBoard

log = logging.getLogger(__name__)

FIRE_LINE = "fire_line"  # the device's name in events and in the status
KIND = "fire_panel"


class FireLine:
    def __init__(self, board: DeviceBoard):
        self.board = board
        self.last_fire: bool | None = None  # the last reading taken while the line was sound
        board.register(FIRE_LINE, KIND)

    def read(self, fire: bool | None, trouble: bool | None) -> bool | None:
        """The fire input as the gate should take it: None while the line is in fault (nothing known)."""
        if trouble is None:  # not read this time: nothing to say about the line
            return fire
        if trouble:
            self.board.down(FIRE_LINE, "the fire panel reports a line fault: its fire input is not believed",
                            {"priority": "high", "fire_input": bool(self.last_fire)})
            return None
        self.board.up(FIRE_LINE)
        if fire is not None:
            self.last_fire = fire
        return fire
