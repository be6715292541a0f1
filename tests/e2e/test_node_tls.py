"""Nodes reach the broker over TLS and verify it with the CA provisioning hands out; test and
demo agents never reboot the machine they run on."""
import time
from pathlib import Path

import pytest

from server.mosquitto import ensure_tls_files
from tests.mqtt_helpers import wait_until_accepted
from tests.system import System


@pytest.fixture
def tls_system(tmp_path, tls_broker):
    s = System(tmp_path, tls_broker, mqtt_tls_port=tls_broker.tls_port,
               ca_file=tls_broker.ca_file)
    yield s
    s.stop()


def _node(s, name="Loa 1"):
    province = s.area("Tỉnh Nam Định", "ND", "province")
    cluster = s.area("Cụm 1", "ND-1", "cluster", province["id"])
    answer = s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": name})
    m = answer["mqtt"]
    wait_until_accepted("127.0.0.1", s.broker.port, m["username"], m["password"])
    return answer


def _online(s, node_id, timeout=15.0):
    return s.wait(lambda: s.ok("GET", f"/api/v1/nodes/{node_id}")["online"], timeout,
                  what=f"{node_id} online")


def test_agent_verifies_the_broker_with_the_provisioned_ca_and_plays_over_tls(tls_system):
    s = tls_system
    answer = _node(s)
    m = answer["mqtt"]
    assert m["tls"] is True and m["port"] == s.broker.tls_port
    assert m["ca_pem"] == Path(s.broker.ca_file).read_text()
    assert "tls = true" in answer["config"] and 'ca_file = "/etc/loaphuong/ca.pem"' in \
        answer["config"]
    s.start_agent(answer)
    _online(s, answer["id"])
    cmd = s.ok("POST", f"/api/v1/nodes/{answer['id']}/commands",
               json={"type": "test", "body": {"kind": "tone"}})
    done = s.wait(lambda: (c := s.ok("GET", f"/api/v1/commands/{cmd['id']}"))["status"]
                  in ("finished", "failed") and c, what="the test tone's ack")
    assert done["status"] == "finished", done


def test_agent_that_trusts_another_ca_is_refused_by_the_broker(tls_system, tmp_path):
    s = tls_system
    answer = _node(s)
    other = ensure_tls_files(tmp_path / "other-ca", ["127.0.0.1", "localhost"])
    answer["mqtt"]["ca_pem"] = other.ca_cert.read_text()   # a broker it must not trust
    proc, _ = s.start_agent(answer)
    log = s.tmp / "agents" / answer["id"] / "agent.log"
    deadline = time.monotonic() + 15
    while "CERTIFICATE_VERIFY_FAILED" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, "the agent never reported the failed verification"
        time.sleep(0.1)
    assert proc.poll() is None                        # it keeps trying, it does not give up
    assert not s.ok("GET", f"/api/v1/nodes/{answer['id']}")["online"]


def test_a_reboot_command_to_a_test_agent_never_runs_systemctl(system, tmp_path):
    s = system
    answer = _node(s)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    ran = tmp_path / "systemctl-ran"
    (fake_bin / "systemctl").write_text(f"#!/bin/sh\necho \"$@\" >> {ran}\n")
    (fake_bin / "systemctl").chmod(0o755)
    import os
    s.start_agent(answer, env={"PATH": f"{fake_bin}:{os.environ['PATH']}"})
    _online(s, answer["id"])
    cmd = s.ok("POST", f"/api/v1/nodes/{answer['id']}/commands", json={"type": "reboot"})
    marker = s.tmp / "agents" / answer["id"] / "rebooted"
    s.wait(lambda: marker.exists(), 20, what="the agent's harmless reboot command")
    s.wait(lambda: s.ok("GET", f"/api/v1/commands/{cmd['id']}")["status"]
           in ("received", "finished"), what="the reboot's received ack")
    assert not ran.exists(), f"the agent ran systemctl {ran.read_text()}"
