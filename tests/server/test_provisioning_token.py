"""A node's provisioning answer fetched once with a one-time token (POST
/api/v1/nodes/{id}/provisioning-token, then GET /api/v1/nodes/{id}/provisioning with
``Authorization: Bearer TOKEN``, as hardware/install-pi.sh --provision URL --token T does)."""
import datetime as dt
import tomllib
from pathlib import Path

from sqlalchemy import select, update

from device_agent.config import parse_config
from server.models import AuditEntry, Node, ProvisioningToken, utcnow


def _db(s):
    return s.app.extensions["db_sessions"]()


def _node(s, node_id: str) -> Node:
    with _db(s) as db:
        node = db.get(Node, node_id)
        assert node is not None
        db.expunge(node)
        return node


def _passwd_line(s, node_id: str) -> str:
    lines = (Path(s.settings.mosquitto_dir) / "passwd").read_text(encoding="utf-8").splitlines()
    return next(line for line in lines if line.startswith(f"{node_id}:"))


def _provisioned(s, cluster_id: int, name: str = "Loa chợ") -> dict:
    return s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster_id, "name": name})


def _fetch(s, node_id: str, token: str | None):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return s.call("GET", f"/api/v1/nodes/{node_id}/provisioning", token=None, headers=headers)


def _mine(s, wards) -> dict:
    return _provisioned(s, wards["mine_cluster"]["id"])


def test_a_token_fetches_the_answer_once_and_the_second_use_is_refused(app_only, wards):
    s = app_only
    node = _mine(s, wards)
    r = s.call("POST", f"/api/v1/nodes/{node['id']}/provisioning-token",
               token=wards["technician"])
    assert r.status_code == 201, r.text
    assert r.headers["Cache-Control"] == "no-store"
    made = r.json()
    assert made["url"] == (s.settings.public_url.rstrip("/")
                           + f"/api/v1/nodes/{node['id']}/provisioning")
    assert len(made["token"]) >= 43  # 32 random bytes, URL-safe
    with _db(s) as db:  # only its hash is stored
        assert db.scalar(select(ProvisioningToken.token_hash)) != made["token"]
    first = _fetch(s, node["id"], made["token"])
    assert first.status_code == 200, first.text
    assert first.headers["Cache-Control"] == "no-store"
    answer = first.json()
    assert answer["id"] == node["id"] and answer["groups"] == node["groups"]
    second = _fetch(s, node["id"], made["token"])
    assert second.status_code == 401
    assert second.json()["error"]["code"] == "invalid_provisioning_token"
    assert _node(s, node["id"]).mqtt_password_hash  # the second try changed nothing
    with _db(s) as db:
        actions = [e.action for e in db.scalars(select(AuditEntry).where(
            AuditEntry.target_id == node["id"]))]
    assert "node.provisioning_token" in actions and "node.provisioning_fetched" in actions


def test_the_fetch_rotates_the_broker_password_and_the_answer_is_an_agent_config(app_only,
                                                                                  wards):
    s = app_only
    node = _mine(s, wards)
    before_hash, before_line = _node(s, node["id"]).mqtt_password_hash, _passwd_line(s, node["id"])
    token = s.ok("POST", f"/api/v1/nodes/{node['id']}/provisioning-token")["token"]
    answer = _fetch(s, node["id"], token).json()
    assert answer["mqtt"]["password"] != node["mqtt"]["password"]
    assert _node(s, node["id"]).mqtt_password_hash != before_hash
    assert _passwd_line(s, node["id"]) != before_line  # the broker learnt the new password
    config = parse_config(tomllib.loads(answer["config"]))
    assert config.node_id == node["id"]
    assert config.mqtt.password == answer["mqtt"]["password"]
    assert list(config.groups) == answer["groups"]


def test_an_expired_token_is_refused_and_changes_nothing(app_only, wards):
    s = app_only
    node = _mine(s, wards)
    token = s.ok("POST", f"/api/v1/nodes/{node['id']}/provisioning-token")["token"]
    with _db(s) as db:
        db.execute(update(ProvisioningToken).values(expires_at=utcnow() - dt.timedelta(seconds=1)))
        db.commit()
    before = _node(s, node["id"]).mqtt_password_hash
    r = _fetch(s, node["id"], token)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_provisioning_token"
    assert _node(s, node["id"]).mqtt_password_hash == before


def test_a_token_made_for_another_node_or_none_at_all_is_refused(app_only, wards):
    s = app_only
    one, two = _mine(s, wards), _provisioned(s, wards["mine_cluster"]["id"], "Loa trường")
    token = s.ok("POST", f"/api/v1/nodes/{one['id']}/provisioning-token")["token"]
    before = _node(s, two["id"]).mqtt_password_hash
    for bad in (token, "x" * 43, "", None):
        r = _fetch(s, two["id"], bad)
        assert r.status_code == 401, (bad, r.text)
        assert r.json()["error"]["code"] == "invalid_provisioning_token"
    assert _node(s, two["id"]).mqtt_password_hash == before
    # a user's login token is not a provisioning token either
    assert _fetch(s, one["id"], s.token).status_code == 401
    assert _fetch(s, one["id"], token).status_code == 200  # still the first node's, unused


def test_a_new_token_replaces_the_earlier_one(app_only, wards):
    s = app_only
    node = _mine(s, wards)
    old = s.ok("POST", f"/api/v1/nodes/{node['id']}/provisioning-token")["token"]
    new = s.ok("POST", f"/api/v1/nodes/{node['id']}/provisioning-token")["token"]
    assert _fetch(s, node["id"], old).status_code == 401
    assert _fetch(s, node["id"], new).status_code == 200


def test_only_a_technician_or_admin_of_the_nodes_area_makes_a_token(app_only, wards):
    s = app_only
    with _db(s) as db:
        other = db.scalar(select(Node.id).where(Node.cluster_id == wards["other_cluster"]["id"]))
    r = s.call("POST", f"/api/v1/nodes/{other}/provisioning-token", token=wards["technician"])
    assert r.status_code == 404, r.text  # another ward's node is not even seen
    mine = _mine(s, wards)
    r = s.call("POST", f"/api/v1/nodes/{mine['id']}/provisioning-token", token=wards["approver"])
    assert r.status_code == 403, r.text
    r = s.call("POST", f"/api/v1/nodes/{mine['id']}/provisioning-token", token=None)
    assert r.status_code == 401, r.text
    with _db(s) as db:
        assert db.scalar(select(ProvisioningToken)) is None


def test_a_revoked_node_gets_no_token_and_its_earlier_token_fetches_nothing(app_only, wards):
    s = app_only
    node = _mine(s, wards)
    token = s.ok("POST", f"/api/v1/nodes/{node['id']}/provisioning-token")["token"]
    s.ok("POST", f"/api/v1/nodes/{node['id']}/revoke")
    r = _fetch(s, node["id"], token)
    assert r.status_code == 410 and r.json()["error"]["code"] == "node_revoked"
    assert _node(s, node["id"]).mqtt_password_hash == "!revoked"
    r = s.call("POST", f"/api/v1/nodes/{node['id']}/provisioning-token")
    assert r.status_code == 410 and r.json()["error"]["code"] == "node_revoked"


def test_wrong_tokens_are_rate_limited_like_logins(make_app, tmp_path):
    s = make_app(login_limit_ip="3/minute")
    ward = s.area("Phường 1", "P1", "ward")
    node = _provisioned(s, s.area("Cụm 1", "P1-1", "cluster", ward["id"])["id"])
    codes = [_fetch(s, node["id"], "wrong-token").status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    r = _fetch(s, node["id"], "wrong-token")
    assert r.json()["error"]["code"] == "rate_limited"
    assert "cấp phát" in r.json()["error"]["message"]  # not a login's message
