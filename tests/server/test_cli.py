"""``python -m server.cli``, what a technician types on the server: each command says what was
wrong in one line and exits non-zero (2 for the instance's settings, 1 for the request), and a
refused command changes nothing."""
from __future__ import annotations

import contextlib
import gc
import os

import pytest
from sqlalchemy import select

from server.cli import init_instance, instance_session, main as cli
from server.models import ApiToken, User


@pytest.fixture
def instance(tmp_path):
    path = tmp_path / "instance"
    init_instance(path, "admin-pass-1")
    return path


def _run(instance, capsys, *argv: str) -> tuple[int, str, str]:
    code = cli(["--instance", str(instance), *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _users(instance) -> dict[str, User]:
    with instance_session(instance) as db:
        users = {u.username: u for u in db.scalars(select(User))}
        for u in users.values():
            db.expunge(u)
    return users


def _tokens(instance) -> list[str]:
    with instance_session(instance) as db:
        return list(db.scalars(select(ApiToken.name)))


@pytest.mark.parametrize("argv", [
    ["init"], ["user", "canbo", "--role", "staff", "--password", "staff-pass-1"],
    ["token", "admin"], ["revoke-tokens", "admin"], ["audit-verify"], ["keys", "list"],
    ["keys", "rotate"], ["sync-broker"],
], ids=lambda argv: " ".join(argv[:2]))
def test_every_command_on_an_instance_with_a_bad_setting_exits_2_naming_it(instance, capsys,
                                                                           argv):
    (instance / "config.toml").write_text("speaker_count = 3\n", encoding="utf-8")
    code, out, err = _run(instance, capsys, *argv)
    assert code == 2 and out == ""
    assert err.strip() == "config: speaker_count: unknown setting"
    (instance / "config.toml").unlink()
    assert set(_users(instance)) == {"admin"} and _tokens(instance) == []


def _open_files(folder) -> list[str]:
    """The files below ``folder`` this process holds open."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own, closed by now
            found.append(os.readlink(f"/proc/self/fd/{fd}"))
    return sorted(f for f in found if f.startswith(str(folder)))


@pytest.mark.parametrize("argv", [
    ["user", "canbo", "--role", "staff", "--password", "staff-pass-1"], ["user", "canbo"],
    ["token", "admin"], ["revoke-tokens", "admin"], ["audit-verify"], ["keys", "list"],
    ["keys", "activate", "no-such-key"], ["sync-broker"],
], ids=lambda argv: " ".join(argv[:3]))
def test_a_command_run_in_process_leaves_no_database_file_open(instance, capsys, argv):
    """What runs the CLI in its own process (a test, a script) keeps no connection to the
    instance's database once a command is done, whether it succeeded or was refused."""
    before = _open_files(instance)
    gc.disable()  # an unreferenced engine's connections would close when collected
    try:
        _run(instance, capsys, *argv)
        assert _open_files(instance) == before
    finally:
        gc.enable()


@pytest.mark.parametrize("command", ["token", "revoke-tokens"])
def test_a_token_command_for_a_user_who_does_not_exist_says_so(instance, capsys, command):
    code, out, err = _run(instance, capsys, command, "ghost")
    assert (code, out, err.strip()) == (1, "", "no user ghost")
    assert _tokens(instance) == []


def test_a_token_is_made_for_a_user_and_revoked_by_name(instance, capsys):
    code, out, _ = _run(instance, capsys, "token", "admin", "--name", "zalo-bot")
    assert code == 0 and len(out.strip()) >= 32
    assert _tokens(instance) == ["zalo-bot"]
    assert _run(instance, capsys, "revoke-tokens", "admin", "--name", "other")[:2] == (
        0, "0 token(s) revoked\n")
    assert _run(instance, capsys, "revoke-tokens", "admin", "--name", "zalo-bot")[:2] == (
        0, "1 token(s) revoked\n")
    assert _tokens(instance) == []


def test_a_new_user_refused_by_the_rules_is_not_made(instance, capsys):
    code, out, err = _run(instance, capsys, "user", "canbo", "--role", "staff",
                          "--password", "short")
    assert code == 1 and out == ""
    assert "password" in err.lower() or "mật khẩu" in err.lower(), err
    assert set(_users(instance)) == {"admin"}
    code, out, _ = _run(instance, capsys, "user", "canbo", "--role", "staff",
                        "--password", "staff-pass-1")
    assert code == 0 and out == "user canbo: staff, all areas\n"
    assert _users(instance)["canbo"].role == "staff"


def test_a_key_command_on_a_key_that_does_not_exist_is_refused(instance, capsys):
    code, out, err = _run(instance, capsys, "keys", "activate", "no-such-key")
    assert code == 1 and out == ""
    assert err.startswith("keys: ") and "no-such-key" in err, err
