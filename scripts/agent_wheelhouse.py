"""Fetch the wheels a clean install of the agent distribution (agent/pyproject.toml) needs, its
dependencies and its build backend, into a local folder: by default ``wheelhouse/`` in the
virtualenv that runs this (``.venv/wheelhouse``; ``LOA_WHEELHOUSE`` or ``--dest`` moves it).

``make test-deps`` runs it once (again when agent/pyproject.toml changes), so
tests/agent/test_agent_distribution.py can build the agent's wheel and install it in a clean
virtualenv with ``--no-index --find-links`` that folder, without the network.

``--arch aarch64`` fetches them for a 64-bit Raspberry Pi OS (bookworm: CPython 3.11, glibc 2.36)
instead of this machine: ``hardware/install-pi.sh --wheelhouse`` then installs a Pi offline
(``make test-pi-install`` does so in an arm64 root).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AGENT_PROJECT = ROOT / "agent" / "pyproject.toml"


def default_dest() -> Path:
    return Path(os.environ.get("LOA_WHEELHOUSE") or Path(sys.prefix) / "wheelhouse")


def requirements(pyproject: Path = AGENT_PROJECT) -> list[str]:
    """What building and installing the agent takes: its build backend and its dependencies."""
    with open(pyproject, "rb") as f:
        data = tomllib.load(f)
    return list(data["build-system"]["requires"]) + list(data["project"]["dependencies"])


def platform_options(arch: str | None) -> list[str]:
    """pip's options for wheels that run on Debian bookworm's Python on ``arch`` (None: here)."""
    if arch is None:
        return []
    # pip takes the given platform tags literally: every glibc bookworm's 2.36 runs
    platforms = [f"manylinux2014_{arch}"] + [f"manylinux_2_{minor}_{arch}"
                                              for minor in range(17, 37)]
    return [*(o for tag in platforms for o in ("--platform", tag)), "--python-version", "3.11",
            "--implementation", "cp", "--abi", "cp311", "--abi", "abi3", "--abi", "none"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dest", type=Path, default=default_dest())
    p.add_argument("--arch", choices=["aarch64", "x86_64"],
                   help="for a Debian bookworm machine of this architecture (default: this one)")
    args = p.parse_args(argv)
    args.dest.mkdir(parents=True, exist_ok=True)
    # wheels only: the test installs them on this machine's Python without building anything
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary",
                           ":all:", *platform_options(args.arch), "--dest", str(args.dest),
                           *requirements()])
    if done.returncode == 0:
        print(f"agent wheelhouse: {args.dest}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
