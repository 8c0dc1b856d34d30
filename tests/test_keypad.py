"""P34 / SPEC §5 OSDP keypad: key presses in OSDP encoding assembled into PIN entries (pure, no device)."""
from __future__ import annotations

import logging

import pytest

from drivers.interfaces import Presentation
from drivers.keypad import KeypadEntry

S = 1_000_000_000  # ns a second
HASH, STAR = b"\r", b"\x7f"  # `#` and `*` as an OSDP keypad sends them


def typed(entry: KeypadEntry, *parts: tuple[float, bytes], secure: bool = True) -> list[Presentation]:
    """Feed (seconds, keys) events in order; what they end, ending with a poll long after the last."""
    out = []
    for t, keys in parts:
        out += entry.keys(keys, int(t * S), secure=secure)
    return out + entry.expire(int((parts[-1][0] + 60) * S))


@pytest.mark.parametrize("parts, pins", [
    # `#` ends an entry, whenever its digits came, over any number of polls
    ([(0, b"1234" + HASH)], ["1234"]),
    ([(0, b"12"), (1.5, b"3"), (2.9, b"4"), (5.0, HASH)], ["1234"]),
    ([(0, b"12345678" + HASH)], ["12345678"]),
    # a pause longer than 3 s ends it too: what came before is the PIN, what comes after a new entry
    ([(0, b"1234")], ["1234"]),
    ([(0, b"12"), (3.5, b"34" + HASH)], []),  # 2 digits, then 2 more: neither is a PIN
    ([(0, b"1234"), (3.5, b"5678" + HASH)], ["1234", "5678"]),
    ([(0, b"1234" + HASH + b"5678" + HASH)], ["1234", "5678"]),
    # fewer than 4 or more than 8 digits: nothing
    ([(0, b"123" + HASH)], []),
    ([(0, b"123456789" + HASH)], []),
    ([(0, b"12345"), (1, b"6789"), (2, HASH)], []),
    # `*` clears what was typed; `#` with nothing typed is nothing
    ([(0, b"99" + STAR + b"1234" + HASH)], ["1234"]),
    ([(0, b"123456789"), (1, STAR), (2, b"4321" + HASH)], ["4321"]),
    ([(0, b"1234" + STAR)], []),
    ([(0, HASH + HASH)], []),
    # a key that is no digit, `*` or `#` (a function key) is ignored, the entry goes on
    ([(0, b"12A34" + HASH)], ["1234"]),
])
def test_p34_keypad_entries(parts, pins):
    assert [p.value for p in typed(KeypadEntry("side-in"), *parts)] == pins


def test_p34_a_pin_is_a_presentation_of_its_reader_at_its_last_key():
    e = KeypadEntry("side-in")
    assert e.keys(b"12", 1 * S, secure=True) == []
    assert e.keys(b"34" + HASH, 2 * S, secure=True) == [Presentation("side-in", "pin", "1234", 2 * S)]
    e.keys(b"5678", 10 * S, secure=True)
    assert e.expire(13 * S) == []  # a pause of exactly 3 s is not longer than 3 s
    assert e.expire(13 * S + 1) == [Presentation("side-in", "pin", "5678", 10 * S)]  # the time of the last digit
    assert e.expire(20 * S) == []  # ended once


def test_p34_the_pause_is_the_entrys_own():
    e = KeypadEntry("side-in", pause_s=0.5)
    e.keys(b"1234", 0, secure=True)
    assert [p.value for p in e.expire(S)] == ["1234"]


def test_p34_a_card_read_while_typing_discards_the_digits():
    e = KeypadEntry("side-in")
    e.keys(b"12", 0, secure=True)
    e.card()
    assert e.keys(b"34" + HASH, S, secure=True) == []  # only 2 digits since the card
    e.keys(b"5678", 2 * S, secure=True)
    e.card()
    assert e.expire(60 * S) == []


def test_p34_keys_without_the_secure_channel_are_dropped_with_the_entry_under_way(caplog):
    e = KeypadEntry("side-in")
    with caplog.at_level(logging.WARNING, logger="drivers.keypad"):
        assert e.keys(b"1234" + HASH, 0, secure=False) == []
    assert "keypad entry at reader side-in dropped: secure channel down" in caplog.text
    e.keys(b"12", S, secure=True)
    e.keys(b"34", 2 * S, secure=False)  # the channel fell meanwhile: the first half goes too
    assert e.keys(b"56" + HASH, 3 * S, secure=True) == []
    assert e.expire(60 * S) == []


def test_p34_a_reader_going_offline_discards_the_entry():
    e = KeypadEntry("side-in")
    e.keys(b"1234", 0, secure=True)
    e.discard("reader offline")
    assert e.expire(60 * S) == []


def test_p34_no_digit_reaches_a_log_line(caplog):
    """The digits typed (5, 6, 9: none of them is in the messages' own words) are in no log message."""
    e = KeypadEntry("side-in")
    with caplog.at_level(logging.DEBUG):
        typed(e, (0, b"9659" + HASH), (1, b"96"), (1.5, STAR), (2, b"965"), (2.5, HASH), (3, b"965596659"),
              (4, HASH), (5, b"9665"), (30, b"69"))
        e.card()
        typed(e, (40, b"5669"), secure=False)
        e.keys(b"56", 50 * S, secure=True)
        e.discard("reader offline")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) >= 5, messages  # the entries that came to nothing were said
    assert not any(d in m for m in messages for d in "569"), messages
