"""An area's MQTT group never takes the protocol's every-node group, a name of the server's own
fallback scheme, or another area's group, whatever code a user types."""
from server.cli import main as cli


def _ward_operator(s):
    province = s.area("Thành phố Hải Phòng", "HP", "province")
    ward = s.area("Phường Lê Chân", "HP-LC", "ward", province["id"])
    assert cli(["--instance", str(s.instance), "user", "vanhanh-lc", "--role", "operator",
                "--password", "mat-khau-123", "--area-id", str(ward["id"])]) == 0
    return province, ward, s.login("vanhanh-lc", "mat-khau-123")


def _cluster(s, token, ward, code):
    return s.ok("POST", "/api/v1/areas", token=token,
                json={"name": f"Cụm {code}", "code": code, "kind": "cluster",
                      "parent_id": ward["id"]})


def test_a_ward_cluster_coded_all_does_not_become_the_every_node_group(app_only):
    s = app_only
    province, ward, operator = _ward_operator(s)
    groups = {province["group"], ward["group"]}
    for code in ("ALL", "all", " All ", "area-99", "Area-1"):
        area = _cluster(s, operator, ward, code)
        assert area["group"] != "all" and area["group"] not in groups
        assert area["group"] == f"area-{area['id']}"  # the server's own name for it
        groups.add(area["group"])
    # and a node there listens to its own groups and `all`, not to another area's
    node = s.ok("POST", "/api/v1/nodes", json={"cluster_id": area["id"], "name": "Loa"})
    assert node["groups"] == [area["group"], ward["group"], province["group"]]


def test_two_codes_that_slug_alike_get_different_groups(app_only):
    s = app_only
    _, ward, operator = _ward_operator(s)
    first = _cluster(s, operator, ward, "HP-LC-KP1")
    second = _cluster(s, operator, ward, "hp lc kp1")
    third = _cluster(s, operator, ward, "Hp-Lc-Kp1")
    assert first["group"] == "hp-lc-kp1"
    assert len({first["group"], second["group"], third["group"]}) == 3
    # an area coded after another's fallback name does not take it either
    fourth = _cluster(s, operator, ward, second["group"])
    assert fourth["group"] not in (first["group"], second["group"], third["group"])


def test_node_ids_never_take_a_server_accounts_name(app_only):
    s = app_only
    province, ward, operator = _ward_operator(s)
    cluster = _cluster(s, operator, ward, "LOA")           # group "loa", node ids from it
    for node_id in (s.settings.mqtt_username, "loa-dispatcher", "loa-1"):
        r = s.call("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa",
                                                   "id": node_id})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid", r.text
    generated = s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa"})
    assert not generated["id"].startswith("loa-") and generated["mqtt"]["username"] == \
        generated["id"]
