"""Which line a key of the config is on: tomllib gives no positions, so a scan of the text finds them, and
what a value spans (multi-line arrays and strings) must never be taken for a key or a table."""
from __future__ import annotations

import tomllib

from edge.config.lines import KeyLines, key_path

TEXT = '''\
# a comment with name = "not a key"
[site]   # the site
id = "hq"
"gate" = "g-1"
site2.timezone = "UTC"

[areas]
tree = [
  "site",         # [doors] in a comment
  "site/[x]",
  """
name = "inside a string"
""",
]
note = """
[[doors]]
lock_coil = 9
"""

[[doors]]
name = "main"
lock_coil = 0
inline = { a = 1, b = [1, 2] }

[doors.extra]
depth = 1

[[doors]]
name = "office"
lock_coil = 1

[schedules."visiting hours"]
end = "21:30"
'''


def test_every_key_is_found_on_its_own_line():
    tomllib.loads(TEXT)  # the text is TOML: the scan is tested on what the parser takes
    k = KeyLines(TEXT)
    lines = TEXT.splitlines()
    expect = {
        ("site",): "[site]   # the site",
        ("site", "id"): 'id = "hq"',
        ("site", "gate"): '"gate" = "g-1"',
        ("site", "site2", "timezone"): 'site2.timezone = "UTC"',
        ("areas", "tree"): "tree = [",
        ("areas", "note"): 'note = """',
        ("doors", 0): "[[doors]]",
        ("doors", 0, "lock_coil"): "lock_coil = 0",
        ("doors", 0, "inline", "a"): "inline = { a = 1, b = [1, 2] }",  # inside an inline table: its key's line
        ("doors", 0, "extra", "depth"): "depth = 1",
        ("doors", 1, "name"): 'name = "office"',
        ("doors", 1, "lock_coil", 3): "lock_coil = 1",  # below a key (a list item): the key
        ("schedules", "visiting hours", "end"): 'end = "21:30"',
        ("doors", 1, "pulse_s"): "[[doors]]",  # not written: its table
    }
    for loc, line in expect.items():
        n = k.line_of(loc)
        assert n is not None and lines[n - 1] == line, (loc, n, lines[n - 1] if n else None)
    assert lines[k.line_of(("doors", 1)) - 1] == "[[doors]]" and k.line_of(("doors", 1)) > k.line_of(("doors", 0))
    assert k.line_of(("nowhere",)) is None
    assert ("doors", 2) not in k.lines  # the [[doors]] inside a string is no table


def test_key_paths_read_as_written():
    assert key_path(("doors", 1, "lock_coil")) == "doors[1].lock_coil"
    assert key_path(("schedules", "holiday", "end")) == "schedules.holiday.end"
    assert key_path(()) == "(top level)"
