"""hardware/install-pi.sh --provision URL --token T against a running server: curl, called as
the script calls it, fetches the node's answer once; the node connects with the new password
and the password of the answer handed out at provisioning no longer does."""
import json
import shutil
import subprocess

import pytest

from tests.mqtt_helpers import Client, wait_until_accepted

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def _curl(url: str, token: str) -> subprocess.CompletedProcess:
    """As install-pi.sh does: the token in a curl config on stdin, not on the command line."""
    return subprocess.run(["curl", "-fsS", "--max-time", "30", "-K", "-", url],
                          input=f'header = "Authorization: Bearer {token}"\n',
                          capture_output=True, text=True, timeout=60, check=False)


def test_curl_fetches_the_answer_once_and_only_its_new_password_connects(app_only):
    s = app_only
    ward = s.area("Phường Hồng Gai", "QN-HG", "ward")
    cluster = s.area("Cụm 1", "QN-HG-1", "cluster", ward["id"])
    first = s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa 1"})
    m = first["mqtt"]
    wait_until_accepted(m["host"], m["port"], m["username"], m["password"])
    made = s.ok("POST", f"/api/v1/nodes/{first['id']}/provisioning-token")

    got = _curl(made["url"], made["token"])
    assert got.returncode == 0, got.stderr
    answer = json.loads(got.stdout)
    assert answer["id"] == first["id"] and "config" in answer
    new = answer["mqtt"]
    wait_until_accepted(new["host"], new["port"], new["username"], new["password"])
    assert not Client(m["host"], m["port"], m["username"], m["password"]).connect()

    again = _curl(made["url"], made["token"])
    assert again.returncode == 22 and "401" in again.stderr  # curl -f: an HTTP error
