"""``python -m server.cli``: set up an instance (database, signing key, admin), make accounts
and long-lived API tokens, and regenerate the broker's password file and ACL."""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select

from .auth import ROLES, Role, issue_token
from .config import ConfigError, load_settings
from .errors import ApiError
from .i18n import LANGUAGES
from . import keys
from .keys import create_signing_key, register_public_key
from .models import ApiToken, User, init_db, make_engine, make_sessionmaker, rows_changed
from .bodies import UserCreate, UserWrite, parse
from .users import save_user

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    from .config import Settings


def init_instance(instance: Path, admin_password: str | None,
                  overrides: dict[str, Any] | None = None) -> tuple[str, bool]:
    """Create the database, signing key and admin account unless they exist.

    Returns (admin password or "" when the account already existed, created flag)."""
    instance.mkdir(parents=True, exist_ok=True)
    instance.chmod(0o700)  # the database, signing key and broker password live here
    settings = load_settings(instance, overrides)
    if settings.database_url.startswith("sqlite:///"):
        db_file = Path(settings.database_url[len("sqlite:///"):].partition("?")[0])
        if db_file.name not in ("", ":memory:") and db_file.parent.is_dir():
            # made 0600 before SQLite opens it (its -wal and -shm files take the same mode)
            os.close(os.open(db_file, os.O_RDWR | os.O_CREAT, 0o600))
            db_file.chmod(0o600)
    engine = make_engine(settings.database_url)
    init_db(engine)
    create_signing_key(settings.signing_key_file, settings.signing_kid)
    with make_sessionmaker(engine)() as db:
        register_public_key(db, settings.signing_key_file)
        admin = db.scalar(select(User).where(User.username == "admin"))
        created = admin is None
        password = admin_password or (os.urandom(9).hex() if created else "")
        if password:
            save_user(db, None, admin, parse(UserCreate, {
                "username": "admin", "role": Role.ADMIN, "password": password}) if created
                else parse(UserWrite, {"password": password}),
                password_min=settings.password_min_length)
        db.commit()
    engine.dispose()
    return password, created


def parser() -> argparse.ArgumentParser:
    """The commands, each naming its handler (``run``): a handler takes the parsed arguments
    and the instance folder and returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m server.cli")
    ap.add_argument("--instance", default=os.environ.get("LOA_INSTANCE", "instance"))
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("init", help="create the database, signing key and admin account")
    p.add_argument("--admin-password", default=os.environ.get("LOA_ADMIN_PASSWORD"))
    p.set_defaults(run=_init)
    p = sub.add_parser("user", help="create a user, or change only the given fields of one")
    p.add_argument("username")
    p.add_argument("--role", choices=ROLES, help="required for a new user")
    p.add_argument("--password", help="required for a new user; a new one logs the user out")
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("--area-id", type=int, help="limit the user to this area and below")
    scope.add_argument("--all-areas", action="store_true", help="no area limit")
    p.add_argument("--language", choices=LANGUAGES)
    active = p.add_mutually_exclusive_group()
    active.add_argument("--activate", dest="active", action="store_const", const=True)
    active.add_argument("--deactivate", dest="active", action="store_const", const=False,
                        help="refuse the user's logins and tokens")
    p.set_defaults(run=_user)
    p = sub.add_parser("token", help="make a long-lived API token for an integration")
    p.add_argument("username")
    p.add_argument("--name", default="integration")
    p.add_argument("--days", type=int, default=0, help="0: never expires")
    p.set_defaults(run=_token)
    p = sub.add_parser("revoke-tokens", help="delete a user's API tokens (all, or by name)")
    p.add_argument("username")
    p.add_argument("--name", help="only tokens of this name (e.g. integration, login)")
    p.set_defaults(run=_revoke_tokens)
    p = sub.add_parser("sync-broker", help="rewrite the broker's password file and ACL, reload it")
    p.add_argument("--every", type=float, default=0, metavar="SECONDS",
                   help="keep running: sync again whenever the registry changed, checking every "
                        "SECONDS (for web processes on machines without the broker)")
    p.set_defaults(run=_sync_broker)
    p = sub.add_parser("audit-verify", help="check the audit log's hash chain; print its head")
    p.add_argument("--anchor", action="append", default=[], metavar="ID:HASH",
                   help="a head printed earlier: the log must still hold that row unchanged")
    p.set_defaults(run=_audit_verify)
    p = sub.add_parser("keys", help="signing keys: list, rotate, resend KID, activate KID, "
                                    "revoke KID")
    keys_sub = p.add_subparsers(dest="keys_cmd", required=True)
    keys_sub.add_parser("list", help="every key, its state, and how many nodes trust a next key"
                        ).set_defaults(run=_keys(_keys_list))
    keys_sub.add_parser("rotate", help="make a next key and send it to every node"
                        ).set_defaults(run=_keys(_keys_rotate))
    kp = keys_sub.add_parser("resend", help="send KID again to the nodes that have not acked it")
    kp.add_argument("kid")
    kp.set_defaults(run=_keys(_keys_resend))
    kp = keys_sub.add_parser("activate", help="sign with KID from now on")
    kp.add_argument("kid")
    kp.add_argument("--force", action="store_true", help="even if some nodes have not acked it")
    kp.set_defaults(run=_keys(_keys_activate))
    kp = keys_sub.add_parser("revoke", help="tell every node to drop KID")
    kp.add_argument("kid")
    kp.set_defaults(run=_keys(_keys_revoke))
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        status: int = args.run(args, Path(args.instance))
    except ConfigError as err:
        print(f"config: {err}", file=sys.stderr)
        return 2
    except ApiError as err:
        print(err.message(), file=sys.stderr)
        return 1
    return status


@contextlib.contextmanager
def _opened(instance: Path) -> Iterator[tuple[Settings, Engine]]:
    """The instance's settings and its database (ConfigError when the settings are wrong);
    the engine is disposed when the command is done, whether it succeeded or not."""
    settings = load_settings(instance)
    engine = make_engine(settings.database_url)
    try:
        yield settings, engine
    finally:
        engine.dispose()


@contextlib.contextmanager
def _settings_session(instance: Path) -> Iterator[tuple[Settings, Session]]:
    """The instance's settings and a session of its database."""
    with _opened(instance) as (settings, engine), make_sessionmaker(engine)() as db:
        yield settings, db


@contextlib.contextmanager
def instance_session(instance: Path) -> Iterator[Session]:
    """A session of the instance's database."""
    with _settings_session(instance) as (_, db):
        yield db


def _init(args: argparse.Namespace, instance: Path) -> int:
    password, _ = init_instance(instance, args.admin_password)
    print(f"admin password: {password}" if password else "admin account exists")
    return 0


def _named_user(db: Session, username: str) -> User | None:
    user = db.scalar(select(User).where(User.username == username))
    if user is None:
        print(f"no user {username}", file=sys.stderr)
    return user


def _token(args: argparse.Namespace, instance: Path) -> int:
    """``token``: a long-lived API token, printed once."""
    with instance_session(instance) as db:
        user = _named_user(db, args.username)
        if user is None:
            return 1
        print(issue_token(db, user, args.days * 24 or None, name=args.name))
        db.commit()
    return 0


def _revoke_tokens(args: argparse.Namespace, instance: Path) -> int:
    """``revoke-tokens``: a user's tokens, all or those of one name."""
    with instance_session(instance) as db:
        user = _named_user(db, args.username)
        if user is None:
            return 1
        q = delete(ApiToken).where(ApiToken.user_id == user.id)
        n = rows_changed(db.execute(q.where(ApiToken.name == args.name) if args.name else q))
        db.commit()
    print(f"{n} token(s) revoked")
    return 0


def _sync_broker(args: argparse.Namespace, instance: Path) -> int:
    """``sync-broker``: once, or with ``--every`` until SIGTERM or Ctrl-C."""
    import logging
    import signal
    import threading

    from .nodes import follow_broker_accounts, sync_broker_accounts
    every_s: float = args.every
    with _opened(instance) as (settings, engine):
        init_db(engine)  # as the app would at start: a fresh instance has no tables yet
        sessions = make_sessionmaker(engine)
        if every_s <= 0:
            reloaded = sync_broker_accounts(settings, sessions)
            print("reloaded" if reloaded else "written (no broker running)")
            return 0
        if not settings.mosquitto_dir:
            print("config: mosquitto_dir: empty, there are no broker files to keep",
                  file=sys.stderr)
            return 2
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s sync-broker %(levelname)s %(message)s")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            follow_broker_accounts(settings, sessions, every_s, stop)
    return 0


def _user(args: argparse.Namespace, instance: Path) -> int:
    """``user``: only what is given changes; --all-areas (not a missing --area-id) unscopes."""
    with _settings_session(instance) as (settings, db):
        return _save_user(db, args, settings.password_min_length)


def _save_user(db: Session, args: argparse.Namespace, password_min: int) -> int:
    user = db.scalar(select(User).where(User.username == args.username))
    data = {name: value for name, value in (("role", args.role), ("password", args.password),
                                            ("language", args.language), ("active", args.active),
                                            ("area_id", args.area_id)) if value is not None}
    if args.all_areas:
        data["area_id"] = None
    if user is None:
        data["username"] = args.username
    try:
        body = parse(UserCreate if user is None else UserWrite, data)
        user = save_user(db, None, user, body, password_min=password_min)
    except ApiError as err:
        print(err.message(), file=sys.stderr)
        return 1
    db.commit()
    scope = f"area {user.area_id}" if user.area_id is not None else "all areas"
    print(f"user {user.username}: {user.role}, {scope}{'' if user.active else ', inactive'}")
    return 0


KeyStep = Callable[["Session", "Settings", argparse.Namespace], None]


def _keys(step: KeyStep) -> Callable[[argparse.Namespace, Path], int]:
    """A ``keys`` command's handler: ``step`` in a session of the instance's database, a refusal
    of the key lifecycle (server/keys.py) printed as such."""
    def run(args: argparse.Namespace, instance: Path) -> int:
        with _settings_session(instance) as (settings, db):
            try:
                step(db, settings, args)
            except (keys.KeyLifecycleError, RuntimeError) as err:
                print(f"keys: {err}", file=sys.stderr)
                return 1
        return 0
    return run


def _keys_list(db: Session, settings: Settings, args: argparse.Namespace) -> None:
    for k in keys.key_list(db):
        print(f"{k['kid']:24} {k['state']:8} created {k['created']}  activated "
              f"{k['activated']}  retired {k['retired']}  revoked {k['revoked']}"
              + (f"  nodes trusting it: {k['nodes']}" if k["nodes"] else ""))


def _keys_rotate(db: Session, settings: Settings, args: argparse.Namespace) -> None:
    row, cmd = keys.rotate(db, settings)
    db.commit()
    print(f"new key {row.kid} (next); keys command {cmd.id} queued to every node")
    print(f"when the nodes acked it: python -m server.cli keys activate {row.kid}")


def _keys_resend(db: Session, settings: Settings, args: argparse.Namespace) -> None:
    nodes = keys.resend(db, settings, args.kid)
    db.commit()
    print(f"{args.kid} sent again to {len(nodes)} nodes: {', '.join(nodes) or '-'}")


def _keys_activate(db: Session, settings: Settings, args: argparse.Namespace) -> None:
    ready, total = keys.activate(db, settings, args.kid, args.force)
    db.commit()
    print(f"{args.kid} is active: {ready} of {total} nodes acked it")


def _keys_revoke(db: Session, settings: Settings, args: argparse.Namespace) -> None:
    cmd = keys.revoke(db, settings, args.kid)
    db.commit()
    keys.forget_private_key(settings, args.kid)
    print(f"{args.kid} revoked; keys command {cmd.id} queued to every node")


def _audit_verify(args: argparse.Namespace, instance: Path) -> int:
    """``audit-verify``: exit 0 and print the head when the chain holds; 1 naming the first bad
    row."""
    from . import audit
    anchors: list[str] = args.anchor
    try:
        pairs = [(int(a.split(":", 1)[0]), a.split(":", 1)[1]) for a in anchors]
    except (ValueError, IndexError):
        print("--anchor takes ID:HASH", file=sys.stderr)
        return 2
    with instance_session(instance) as db:
        try:
            count, last_id, last_hash = audit.verify(db, pairs)
        except audit.AuditBroken as err:
            print(f"audit log BROKEN: {err}", file=sys.stderr)
            return 1
    print(f"audit log OK: {count} entries")
    print(f"head: {last_id}:{last_hash}")
    print("write the head down or send it off-site; check it later with --anchor")
    return 0


if __name__ == "__main__":
    sys.exit(main())
