"""The broker we start gets the open-files limit its fleet needs, whatever limit the process
that starts it has (a shell's common default is 1,024: about 1,012 nodes)."""
import resource
from pathlib import Path

import pytest

from server.mosquitto import BROKER_OWN_FILES, MosquittoProcess, free_port


def _open_files_limit(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open files line")


def test_the_broker_child_runs_with_the_raised_open_files_limit(tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 5000
    if hard != resource.RLIM_INFINITY and hard < wanted + BROKER_OWN_FILES:
        pytest.skip(f"this machine's hard limit ({hard}) is below what the test asks for")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # as a default shell has it
    broker = MosquittoProcess(tmp_path / "mosquitto", free_port(), max_nodes=wanted)
    try:
        broker.start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        assert broker.open_files is not None
        assert _open_files_limit(broker.pid)[0] == wanted + BROKER_OWN_FILES
        assert broker.open_files.enough and "5000 wanted" in broker.open_files.message
        assert f"max_connections {wanted}" in broker.conf_path.read_text()
    finally:
        broker.stop()


def test_a_brokers_pid_is_there_only_while_it_runs(tmp_path):
    broker = MosquittoProcess(tmp_path / "mosquitto", free_port())
    with pytest.raises(RuntimeError, match="not running"):
        _ = broker.pid
    broker.start()
    try:
        assert (Path("/proc") / str(broker.pid) / "exe").resolve().name == "mosquitto"
    finally:
        broker.stop()
    with pytest.raises(RuntimeError, match="not running"):
        _ = broker.pid
