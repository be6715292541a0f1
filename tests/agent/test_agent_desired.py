"""Desired state: applied only when newer, groups replaced, schedule played from the node's own
clock and cache (also with the broker gone), events kept in the outbox until the broker has them
(across a reconnect and across a restart), late slots skipped, played slots not replayed, and a
media_ready once per media of each new version, also when it is owed across a restart."""
import shutil
import time



def now_ms() -> int:
    return int(time.time() * 1000)


def slot(media_server, slot_id, start_at, name="short", priority=3, **kw):
    return {"slot_id": slot_id, "start_at": start_at, "priority": priority,
            "item": media_server.item(name, item_id=f"item-{slot_id}"), **kw}


def wait_cached(h, sha, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not h.agent.cache.has(sha):
        assert time.monotonic() < deadline, "media never reached the cache"
        time.sleep(0.05)


def test_desired_state_replaces_groups_and_ignores_versions_not_newer(make_node, broker):
    h = make_node(groups=("area-1",))
    broker.add_node(h.node, h.password, ["area-1", "area-2"])   # the server's ACL follows
    desired = h.send("desired", {"version": 2, "volume": 45, "groups": ["area-2"],
                                 "quiet_hours": []})
    h.wait_event("desired_applied", version=2)
    assert h.agent.status()["groups"] == ["area-2"] and h.agent.status()["volume"] == 45

    new_group = h.envelope("set_volume", {"volume": 50}, to="group:area-2")
    h.publish(h.group_topic("area-2"), new_group)
    h.wait_ack(new_group["id"], "finished")
    old_group = h.envelope("set_volume", {"volume": 60}, to="group:area-1")
    h.publish(h.group_topic("area-1"), old_group)              # unsubscribed: never arrives

    h.send("desired", {"version": 2, "volume": 10})             # same version, new id
    h.send("desired", {"version": 1, "volume": 11})             # older
    h.marker()
    assert h.acks(old_group["id"]) == []
    assert len(h.events("desired_applied")) == 1
    assert h.agent.status()["volume"] == 50
    assert h.events("alarm") == []

    h.restart_agent()                                           # all of it persisted
    status = h.agent.status()
    assert status["groups"] == ["area-2"] and status["desired_version"] == 2
    assert h.acks(desired["id"]) == []


def test_desired_without_groups_keeps_current_list_and_prefetches_media(node, media_server):
    media = media_server.media("other")
    node.send("desired", {"version": 1, "prefetch": [media]})
    node.wait_event("desired_applied", version=1)
    wait_cached(node, media["sha256"])
    assert node.agent.status()["groups"] == ["area-1"]


def test_offline_node_plays_schedule_from_cache_and_reports_after_reconnect(node, broker,
                                                                           media_server):
    start_at = now_ms() + 1200   # the broker is down before then (~0.2 s from now)
    s = slot(media_server, "s-0600", start_at)
    node.send("desired", {"version": 1, "schedule": [s]})
    node.wait_event("desired_applied", version=1)
    wait_cached(node, s["item"]["media"]["sha256"])

    node.server.close()
    broker.process.stop()
    line = node.wait_sink(lambda line: line["item_id"] == "item-s-0600")
    assert line["result"] == "completed" and line["started_at"] >= start_at
    assert not node.agent.connected

    broker.process.start()
    node.server = node.connect_server()                 # same persistent session
    played = node.wait_event("played", slot_id="s-0600")
    assert played["result"] == "completed" and played["scheduled_at"] == start_at
    assert played["started_at"] >= start_at


def test_outbox_survives_agent_restart_and_played_slot_is_not_replayed(node, broker,
                                                                       media_server):
    s = slot(media_server, "s-1700", now_ms() + 1200)
    node.send("desired", {"version": 1, "schedule": [s]})
    node.wait_event("desired_applied", version=1)
    wait_cached(node, s["item"]["media"]["sha256"])

    node.server.close()
    broker.process.stop()
    node.wait_sink(lambda line: line["item_id"] == "item-s-1700")
    node.stop_agent()                                   # the played event is only on disk now

    broker.process.start()
    node.server = node.connect_server()
    node.start_agent()
    played = node.wait_event("played", slot_id="s-1700")
    assert played["result"] == "completed"
    node.marker()
    assert len(node.events("played", slot_id="s-1700")) == 1
    assert len(node.sink_lines()) == 1


def test_slot_more_than_60s_late_is_reported_skipped_late(node, media_server):
    s = slot(media_server, "s-missed", now_ms() - 120_000)
    node.send("desired", {"version": 1, "schedule": [s]})
    played = node.wait_event("played", slot_id="s-missed")
    assert played["result"] == "skipped" and played["reason"] == "late"
    assert node.sink_lines() == []


def test_slot_in_quiet_hours_is_skipped_and_emergency_slot_plays(node, media_server):
    t = now_ms() + 300
    node.send("desired", {"version": 1, "quiet_hours": [{"from": "00:00", "to": "23:59"},
                                                        {"from": "23:59", "to": "00:00"}],
                          "schedule": [slot(media_server, "s-normal", t),
                                       slot(media_server, "s-alarm", t, priority=9)]})
    normal = node.wait_event("played", slot_id="s-normal")
    assert normal["result"] == "skipped" and normal["reason"] == "quiet_hours"
    assert node.wait_event("played", slot_id="s-alarm")["result"] == "completed"


def test_new_desired_state_drops_slots_it_no_longer_lists(node, media_server):
    later = now_ms() + 60_000
    node.send("desired", {"version": 1, "schedule": [slot(media_server, "s-a", later),
                                                    slot(media_server, "s-b", later + 1)]})
    node.wait_event("desired_applied", version=1)
    assert sorted(node.agent.status()["waiting"]) == ["item-s-a", "item-s-b"]
    node.send("desired", {"version": 2, "schedule": [slot(media_server, "s-b", later + 1)]})
    node.wait_event("desired_applied", version=2)
    assert node.agent.status()["waiting"] == ["item-s-b"]


def test_media_ready_is_sent_once_per_media_of_each_new_desired_version(node, media_server):
    later = now_ms() + 600_000
    a, b = slot(media_server, "s-a", later), slot(media_server, "s-b", later + 60_000)
    short, other = a["item"]["media"]["sha256"], media_server.media("other")
    node.send("desired", {"version": 1, "schedule": [a, b], "prefetch": [other]})
    node.wait_event("media_ready", sha256=short)       # downloaded and checked
    node.wait_event("media_ready", sha256=other["sha256"])
    node.send("desired", {"version": 1, "schedule": [a]})   # the same version again: nothing
    node.marker()
    assert sorted(e["sha256"] for e in node.events("media_ready")) == \
        sorted([short, other["sha256"]])
    kinds = [e["type"] for e in node.events() if e["type"] in ("desired_applied", "media_ready")]
    assert kinds == ["desired_applied", "media_ready", "media_ready"]  # after it holds them

    node.send("desired", {"version": 2, "schedule": [a]})   # cached already: said at once
    node.wait_event("desired_applied", version=2)
    node.marker()
    assert [e["sha256"] for e in node.events("media_ready")].count(short) == 2
    assert [e["sha256"] for e in node.events("media_ready")].count(other["sha256"]) == 1


def test_a_media_ready_owed_when_the_agent_stopped_is_sent_after_it_restarts(node, media_server):
    media = dict(media_server.media("short"), url=f"{media_server.base}/later.mp3")
    node.send("desired", {"version": 1, "prefetch": [media]})
    node.wait_event("desired_applied", version=1)
    node.stop_agent()                                   # its media not downloadable yet
    assert node.events("media_ready") == []
    shutil.copy(media_server.directory / "short.mp3", media_server.directory / "later.mp3")
    node.start_agent()
    node.wait_event("media_ready", sha256=media["sha256"])
    node.marker()
    assert len(node.events("media_ready")) == 1
