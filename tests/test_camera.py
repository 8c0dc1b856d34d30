"""Camera QR end to end: frames rendered by the camera simulator, served as MJPEG or written to a file,
decoded by the camera reader. No mocks: OpenCV opens the real stream, pyzbar reads the real frames."""
from __future__ import annotations


import pytest

from drivers.camera import CameraReader, decode_frame
from edge.passes import issue_pass
from edge.passes.keys import generate_keypair
from simulators.camera import render
from sitekit import Collector, make_site, wait_until
from test_e2e_gate import Gate


@pytest.fixture
def pass_text(tmp_path):
    key = generate_keypair("central-1", tmp_path)
    return issue_pass(key, "central-1", holder="h-9", category="visitor", areas=["site/lobby"],
                      valid_from=1795000000, valid_until=1795086400, host="h-1", party=2)


def test_a_frame_decodes_clean_and_noisy_and_a_blank_one_is_empty(pass_text):
    assert decode_frame(render(pass_text)) == [pass_text]
    assert decode_frame(render(pass_text, (1280, 720), noise=10, blur=3, rotate=12)) == [pass_text]
    assert decode_frame(render(pass_text, low_light=0.5, glare=True)) == [pass_text]
    assert decode_frame(render(None)) == []


def test_the_stream_gives_each_pass_once_per_window_and_survives_a_drop(procs, pass_text):
    cam = procs.start("camera", "-m", "simulators.camera", "--listen", "127.0.0.1:0", "--hold", "1.5", stdin=True)
    url = cam.wait_for("camera listening").split()[-1]
    seen = Collector()
    reader = CameraReader("cam-1", url, on_presentation=seen.on_presentation, on_state=seen.on_state, dedup_s=3,
                          max_backoff_s=0.5)
    reader.start()
    try:
        seen.wait(lambda: "up" in seen.states)
        cam.send(pass_text)  # in view for 1.5 s at 10 fps: fifteen frames, one credential
        cam.send("GK1:SECOND")
        seen.wait(lambda: "GK1:SECOND" in seen.values)
        assert seen.values == [pass_text, "GK1:SECOND"]
        assert {(p.reader, p.kind) for p in seen.presented} == {("cam-1", "pass")}
        cam.send("!drop")
        seen.wait(lambda: seen.states[-1] == "down")
        seen.wait(lambda: seen.states[-1] == "up")  # reconnected by itself
        cam.send("GK1:THIRD")
        seen.wait(lambda: "GK1:THIRD" in seen.values)
    finally:
        reader.stop()


def test_a_video_file_is_a_source_too(procs, tmp_path, pass_text):
    video = tmp_path / "passes.avi"
    cam = procs.start("camera", "-m", "simulators.camera", "--write", str(video), pass_text)
    cam.wait_for("camera wrote")
    seen = Collector()
    reader = CameraReader("cam-1", str(video), on_presentation=seen.on_presentation, on_state=seen.on_state)
    reader.start()
    try:
        seen.wait(lambda: pass_text in seen.values)
    finally:
        reader.stop()


def test_a_pass_shown_to_the_gate_camera_opens_the_door_once(tmp_path, procs):
    cam = procs.start("camera", "-m", "simulators.camera", "--listen", "127.0.0.1:0", stdin=True)
    url = cam.wait_for("camera listening").split()[-1]
    site = make_site(tmp_path / "site")
    site.add_reader(name="main-cam", type="camera", source=url, door="main", direction="in")
    g = Gate(site, procs)
    g.start_hardware()
    g.start_daemon()
    try:
        first, second = (site.visitor_pass(h) for h in ("h-9", "h-10"))
        g.settle()
        before = g.unlocks(0)
        cam.send(first)
        _, etype, data = g.journal.next(("access.granted", "access.denied"))
        assert (etype, data["reader"], data["holder"]) == ("access.granted", "main-cam", "h-9")
        wait_until(lambda: g.unlocks(0) == before + 1, what="the door opened for the pass")
        cam.send(first)  # held up again within the window: not a second scan
        cam.send(second)
        _, etype, data = g.journal.next(("access.granted", "access.denied"), holder="h-10")
        decisions = [d for _, t, d in g.journal.rows() if t.startswith("access.") and d.get("holder") == "h-9"]
        assert len(decisions) == 1
    finally:
        g.io.close()
