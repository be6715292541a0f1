"""The bridge's size limit holds for what a node really publishes through Mosquitto (the other
limits are driven on the bridge directly: tests/schedules/test_bridge_limits.py)."""
from server.models import Telemetry
from tests.mqtt_helpers import Client
from tests.schedules.helpers import node_json, rows, telemetry


def test_oversized_telemetry_over_the_broker_is_refused_and_counted(system):
    ward = system.area("Phường Phú Hội", "PH", "ward")
    cluster = system.area("Cụm 1", "PH-1", "cluster", ward["id"])
    node = system.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa"})
    client = Client("127.0.0.1", system.broker.port, node["id"], node["mqtt"]["password"],
                    client_id=node["id"])
    assert client.connect()
    try:
        topic = f"{system.settings.topic_prefix}/nodes/{node['id']}/telemetry"
        big = telemetry(agent_version="x", padding="p" * (system.settings.node_max_telemetry_bytes))
        client.publish(topic, big, qos=1)
        answer = system.wait(lambda: (lambda n: n if n["rejected"]["messages"] else None)(
            node_json(system, node["id"])), what="the refusal counted")
    finally:
        client.close()
    assert answer["rejected"]["last_reason"] == "too_large"
    assert answer["rejected"]["last_at"] is not None
    assert answer["telemetry"] is None
    assert rows(system, Telemetry, node["id"]) == []
