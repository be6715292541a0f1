"""A local stand-in for Google Translate's speech endpoint, answering gTTS the way Google does
but with espeak-ng speaking the requested text (real MP3 made by ffmpeg). The test double beside
GTTSEngine: tests point the engine at it so no test reaches the internet, and it can be told to
fail (HTTP 500), hang past the client's timeout, or answer without audio.

    python -m audio.gtts_standin [--port 8765]     # then: --gtts-endpoint http://127.0.0.1:8765/
"""
from __future__ import annotations

import argparse
import base64
import json
import subprocess
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from audio import ff

MODES = ("ok", "error", "hang", "no_audio")


def spoken_mp3(text: str, voice: str = "vi") -> bytes:
    """``text`` spoken by espeak-ng, as a mono 24 kHz MP3 like the ones Google sends."""
    speech = subprocess.run(["espeak-ng", "-v", voice, "--stdout"], input=text.encode("utf-8"),
                            capture_output=True, timeout=60, check=True).stdout
    return ff.run(ff.ffmpeg_args("-loglevel", "error", "-i", "pipe:0", "-ac", "1", "-ar", "24000",
                                 "-c:a", "libmp3lame", "-b:a", "32k", "-f", "mp3", "pipe:1"),
                  input=speech, what="ffmpeg (stand-in)").stdout


def parse_request(body: bytes) -> tuple[str, str]:
    """(text, lang) from a gTTS batchexecute request body."""
    form = urllib.parse.parse_qs(body.decode("utf-8"))
    rpc = json.loads(form["f.req"][0])
    params = json.loads(rpc[0][0][1])
    return params[0], params[1]


def response_body(audio: bytes) -> bytes:
    """What Google answers: an anti-XSSI prefix, then the RPC envelope carrying base64 MP3."""
    payload = json.dumps([base64.b64encode(audio).decode("ascii")])
    envelope = json.dumps([["wrb.fr", "jQ1olc", payload, None, None, None, "generic"]],
                          separators=(",", ":"))
    return f")]}}'\n\n{len(envelope)}\n{envelope}\n".encode()


class StandIn:
    """The server. ``mode`` may be changed while it runs; ``texts`` records what was asked."""

    def __init__(self, mode: str = "ok", hang_s: float = 30.0, host: str = "127.0.0.1",
                 port: int = 0):
        assert mode in MODES, mode
        self.mode = mode
        self.hang_s = hang_s
        self.texts: list[str] = []
        self._release = threading.Event()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    text, lang = parse_request(body)
                except (KeyError, IndexError, ValueError):
                    self.send_error(400, "not a gTTS request")
                    return
                standin.texts.append(text)
                if standin.mode == "hang":
                    standin._release.wait(standin.hang_s)
                    return
                if standin.mode == "error" or lang != "vi":
                    self.send_error(500, "stand-in told to fail")
                    return
                data = (response_body(spoken_mp3(text)) if standin.mode == "ok"
                        else b")]}'\n\n42\n[[\"wrb.fr\",\"jQ1olc\",null]]\n")
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        if not isinstance(host, str):
            host = bytes(host).decode()
        return f"http://{host}:{port}/_/TranslateWebserverUi/data/batchexecute"

    def start(self) -> StandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m audio.gtts_standin", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--mode", choices=MODES, default="ok")
    args = p.parse_args(argv)
    with StandIn(args.mode, port=args.port) as standin:
        print(standin.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
