"""A camera that shows QR passes: renders texts into frames and serves them as an MJPEG stream OpenCV
opens, or writes them to a video file.

    python -m simulators.camera --listen 127.0.0.1:0 "GK1:..."        # http://HOST:PORT/stream.mjpg
    python -m simulators.camera --write passes.avi "GK1:..." "GK1:..."

Each text is shown for `--hold` seconds, then the next; with nothing queued, an empty scene. Effects:
`--noise SIGMA`, `--blur K`, `--rotate DEG`, `--low-light FACTOR`, `--glare`. Stdin at run time: a text
shows it, `image FILE` holds up a picture (a printed pass), `blank` shows the empty scene, `!drop` hangs up every viewer (a stream drop), `!stall S` sends
no frames for S seconds. Prints `camera listening on http://HOST:PORT/stream.mjpg` when serving.
"""
from __future__ import annotations

import argparse
import queue
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import qrcode
from qrcode.constants import ERROR_CORRECT_M


def render(text: str | None, size: tuple[int, int] = (640, 480), *, noise: float = 0.0, blur: int = 0,
           rotate: float = 0.0, low_light: float = 1.0, glare: bool = False, image: str | None = None) -> np.ndarray:
    """One BGR frame: a grey scene with the QR of `text` (none for None) about half the frame high, or
    with `image`, a picture file held up to the camera (a printed pass)."""
    w, h = size
    frame = np.full((h, w), 150, np.uint8)
    if text or image:
        side = int(h * 0.55)
        if image:
            picture = cv2.imread(image, cv2.IMREAD_GRAYSCALE)
            if picture is None:
                raise ValueError(f"cannot read the image {image}")
            img = cv2.resize(picture, (side, side), interpolation=cv2.INTER_AREA)
        else:
            qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=4, box_size=1)
            qr.add_data(text, optimize=0)
            qr.make(fit=True)
            m = np.array(qr.get_matrix(), dtype=np.uint8)
            img = np.where(m, 0, 255).astype(np.uint8)
            img = cv2.resize(img, (side, side), interpolation=cv2.INTER_NEAREST)
        y, x = (h - side) // 2, (w - side) // 2
        frame[y:y + side, x:x + side] = img
        if glare:  # a bright patch over one side of the code, clear of two finder patterns
            cv2.ellipse(frame, (x + side // 2, y + side - side // 6), (side // 4, side // 10), 0, 0, 360, 255, -1)
    if rotate:
        mat = cv2.getRotationMatrix2D((w / 2, h / 2), rotate, 1.0)
        frame = cv2.warpAffine(frame, mat, (w, h), borderValue=150)
    if blur:
        k = blur | 1
        frame = cv2.GaussianBlur(frame, (k, k), 0)
    if low_light != 1.0:
        frame = (frame.astype(np.float32) * low_light).astype(np.uint8)
    if noise:
        frame = np.clip(frame + np.random.normal(0, noise, frame.shape), 0, 255).astype(np.uint8)
    return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)


class Scene:
    """What the camera sees now, advanced by a clock thread; viewers read the current JPEG."""

    def __init__(self, args):
        self.args = args
        self.size = tuple(int(v) for v in args.size.split("x"))
        self.texts: queue.Queue[str | None] = queue.Queue()
        self.cond = threading.Condition()
        self.jpeg = self._encode(None)
        self.frame_no = 0
        self.stall_until = 0.0
        self.generation = 0  # bumped by !drop: every viewer of an older generation hangs up

    def _encode(self, text):
        a = self.args
        image = text[len("image "):] if text and text.startswith("image ") else None
        frame = render(None if image else text, self.size, noise=a.noise, blur=a.blur, rotate=a.rotate,
                       low_light=a.low_light, glare=a.glare, image=image)
        return cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()

    def run(self) -> None:
        showing_until = 0.0
        current = self.jpeg
        blank = self.jpeg
        while True:
            now = time.monotonic()
            announce = None
            if now >= showing_until:
                try:
                    text = self.texts.get_nowait()
                    try:
                        current = self._encode(text) if text else blank
                    except ValueError as e:  # an unreadable picture: say so, show the empty scene
                        print(f"camera: {e}", flush=True)
                        current, text = blank, None
                    showing_until = now + self.args.hold
                    announce = text
                except queue.Empty:
                    current = blank
            if now >= self.stall_until:
                with self.cond:
                    self.jpeg = current
                    self.frame_no += 1
                    self.cond.notify_all()
                if announce:  # at= is CLOCK_MONOTONIC, shared across processes: latency benchmarks use it
                    print(f"camera showing {announce[:16]} at={time.monotonic_ns()}", flush=True)
            time.sleep(1 / self.args.fps)


def handler_for(scene: Scene):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):  # the stream is not worth a log line per viewer
            pass

        def do_GET(self):
            if self.path != "/stream.mjpg":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            gen, seen = scene.generation, -1
            try:
                while gen == scene.generation:
                    with scene.cond:
                        scene.cond.wait_for(lambda: scene.frame_no != seen or gen != scene.generation, 1.0)
                        jpeg, seen = scene.jpeg, scene.frame_no
                    if gen != scene.generation:
                        break
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                     + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True
    return Handler


def write_video(args, texts: list[str]) -> None:
    size = tuple(int(v) for v in args.size.split("x"))
    out = cv2.VideoWriter(args.write, cv2.VideoWriter_fourcc(*"MJPG"), args.fps, size)
    for text in texts + [None]:
        frame = render(text, size, noise=args.noise, blur=args.blur, rotate=args.rotate, low_light=args.low_light,
                       glare=args.glare)
        for _ in range(max(1, int(args.hold * args.fps))):
            out.write(frame)
    out.release()
    print(f"camera wrote {args.write}", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m simulators.camera", description=__doc__.split("\n\n")[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--listen", metavar="HOST:PORT")
    where.add_argument("--write", metavar="FILE.avi")
    p.add_argument("--size", default="640x480", choices=["640x480", "1280x720"])
    p.add_argument("--fps", type=float, default=10)
    p.add_argument("--hold", type=float, default=1.0, help="seconds each text is shown")
    p.add_argument("--noise", type=float, default=0.0)
    p.add_argument("--blur", type=int, default=0)
    p.add_argument("--rotate", type=float, default=0.0)
    p.add_argument("--low-light", type=float, default=1.0)
    p.add_argument("--glare", action="store_true")
    p.add_argument("--script", help="a file of texts, one a line")
    p.add_argument("texts", nargs="*")
    args = p.parse_args(argv)
    texts = list(args.texts)
    if args.script:
        texts += [t.strip() for t in open(args.script, encoding="utf-8") if t.strip()]
    if args.write:
        write_video(args, texts)
        return
    scene = Scene(args)
    for t in texts:
        scene.texts.put(t)
    host, _, port = args.listen.rpartition(":")
    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), handler_for(scene))
    server.daemon_threads = True
    threading.Thread(target=scene.run, daemon=True).start()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    h, pt = server.server_address[:2]
    print(f"camera listening on http://{h}:{pt}/stream.mjpg", flush=True)

    def commands():
        for raw in sys.stdin:
            line = raw.strip()
            if line == "!drop":
                scene.generation += 1
                print("camera dropped every viewer", flush=True)
            elif line.startswith("!stall"):
                scene.stall_until = time.monotonic() + float(line.split()[1])
                print("camera stalled", flush=True)
            elif line == "blank":
                scene.texts.put(None)
            elif line:
                scene.texts.put(line)

    if sys.stdin is not None:
        threading.Thread(target=commands, daemon=True).start()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
