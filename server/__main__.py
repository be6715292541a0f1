"""``python -m server``: serve the web app and API with waitress (a production WSGI server)."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from waitress import serve

from . import create_app
from .config import ConfigError
from .heap import settle


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m server", description=__doc__)
    ap.add_argument("--instance", default=os.environ.get("LOA_INSTANCE", "instance"))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=int(os.environ.get("LOA_PORT", "8080")))
    ap.add_argument("--threads", type=int, default=8)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s web %(levelname)s %(message)s")
    try:
        app = create_app(instance_path=args.instance)
    except ConfigError as err:
        print(f"config: {err}", file=sys.stderr)
        return 2
    settle()
    serve(app, host=args.host, port=args.port, threads=args.threads, ident="LoaPhuong")
    return 0


if __name__ == "__main__":
    sys.exit(main())
