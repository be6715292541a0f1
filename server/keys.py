"""The server's Ed25519 signing key: created once, kept in a 0600 file beside the database;
its public half is registered in the database for provisioning to hand out."""
from __future__ import annotations

import json
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.orm import Session

from device_agent.protocol import load_private_key, private_key_b64, public_key_b64

from .models import ServerKey


def create_signing_key(path: str | os.PathLike, kid: str) -> None:
    """Write a new key file unless one exists (never overwrites: nodes trust the old key)."""
    p = Path(path)
    if p.exists():
        return
    p.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"kid": kid, "private_key": private_key_b64(key)}, f)


def load_signing_key(path: str | os.PathLike) -> tuple[str, Ed25519PrivateKey]:
    """(kid, key) from the key file; a clear error when it is missing or damaged."""
    try:
        data = json.loads(Path(path).read_text())
        return data["kid"], load_private_key(data["private_key"])
    except FileNotFoundError:
        raise RuntimeError(f"no signing key at {path}: run the init step first") from None
    except (ValueError, KeyError) as err:
        raise RuntimeError(f"signing key file {path} is damaged: {err}") from None


def register_public_key(db: Session, path: str | os.PathLike) -> str:
    kid, key = load_signing_key(path)
    row = db.get(ServerKey, kid)
    if row is None:
        db.add(ServerKey(kid=kid, public_key=public_key_b64(key)))
    return kid
