"""The agent's config file: the provisioned TOML loads into one typed object, command-line flags
override it, and a bad value stops the start with an error naming its key."""
from pathlib import Path

import pytest

from device_agent.__main__ import build_parser
from device_agent.config import ConfigError, load_config, parse_config
from tests.agent_harness import Signer, to_toml

PROVISIONED = """\
node_id = "hp-01-a"
topic_prefix = "loa/v1"
groups = ["area-1", "area-3"]
state_dir = "/var/lib/loaphuong/agent"
telemetry_s = 30
tz = "Asia/Ho_Chi_Minh"
[mqtt]
host = "127.0.0.1"
port = 1883
username = "hp-01-a"
password = "s3cret"
tls = false
ca_file = ""
[[server_keys]]
kid = "srv-2026-1"
public_key = "{key}"
[player]
kind = "auto"
sink_dir = ""
realtime = true
[amp]
kind = "none"
gpio_pin = 17
[system]
reboot_command = "systemctl reboot"
"""


@pytest.fixture
def provisioned(tmp_path) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(PROVISIONED.format(key=Signer().public_key))
    return path


def base(**changes) -> dict:
    data = {"node_id": "hp-01-a", "mqtt": {"host": "h", "password": "p"},
            "server_keys": [{"kid": "k", "public_key": Signer().public_key}]}
    data.update(changes)
    return data


def test_provisioned_file_loads_into_typed_config(provisioned):
    cfg = load_config(provisioned)
    assert cfg.node_id == "hp-01-a" and cfg.groups == ("area-1", "area-3")
    assert cfg.state_dir == Path("/var/lib/loaphuong/agent") and cfg.telemetry_s == 30
    assert cfg.mqtt.port == 1883 and cfg.mqtt.password == "s3cret" and not cfg.mqtt.tls
    assert cfg.server_keys[0].kid == "srv-2026-1"
    assert cfg.player.kind == "auto" and cfg.amp.gpio_pin == 17
    assert "s3cret" not in repr(cfg)


def test_command_line_flags_override_the_file(provisioned, tmp_path):
    cfg = load_config(provisioned, state_dir=tmp_path / "st", player="file",
                      sink_dir=tmp_path / "sink")
    assert cfg.state_dir == tmp_path / "st"
    assert cfg.player.kind == "file" and cfg.player.sink_dir == str(tmp_path / "sink")
    args = build_parser().parse_args(["--config", "x.toml", "--player", "ffplay",
                                      "--state-dir", "/tmp/s", "--sink-dir", "/tmp/k"])
    assert (args.config, args.player, args.state_dir, args.sink_dir) == \
        ("x.toml", "ffplay", "/tmp/s", "/tmp/k")


def test_file_player_needs_a_sink_dir(provisioned):
    with pytest.raises(ConfigError) as err:
        load_config(provisioned, player="file")
    assert err.value.key == "player.sink_dir"


@pytest.mark.parametrize("data,key", [
    (base(node_id="HP 01"), "node_id"),
    (base(groups=["ok-1", "Bad Group"]), "groups[1]"),
    (base(telemetry_s=0), "telemetry_s"),
    (base(telemetry_s="30"), "telemetry_s"),
    (base(tz="Mars/Olympus"), "tz"),
    (base(mqtt={"host": "h", "password": "p", "port": 0}), "mqtt.port"),
    (base(mqtt={"host": "h"}), "mqtt.password"),
    (base(mqtt={"host": "h", "password": "p", "tls": "yes"}), "mqtt.tls"),
    (base(server_keys=[]), "server_keys"),
    (base(server_keys=[{"kid": "k", "public_key": "c2hvcnQ="}]), "server_keys[0].public_key"),
    (base(player={"kind": "vlc"}), "player.kind"),
    (base(amp={"kind": "gpio", "gpio_pin": 99}), "amp.gpio_pin"),
    (base(amp={"kind": "relay"}), "amp.kind"),
    (base(system={"reboot_command": " "}), "system.reboot_command"),
    (base(mic={"device": 1}), "mic.device"),
    (base(mic={"min_level_dbfs": 6}), "mic.min_level_dbfs"),
    ({k: v for k, v in base().items() if k != "mqtt"}, "mqtt"),
])
def test_bad_value_is_refused_naming_its_key(data, key):
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert err.value.key == key and key in str(err.value)


def test_the_acoustic_tests_microphone_is_alsas_default_unless_the_config_names_one():
    assert (parse_config(base()).mic.device, parse_config(base()).mic.min_level_dbfs) == \
        ("default", -50.0)
    cfg = parse_config(base(mic={"device": "plughw:CARD=Device,DEV=0", "min_level_dbfs": -60}))
    assert (cfg.mic.device, cfg.mic.min_level_dbfs) == ("plughw:CARD=Device,DEV=0", -60.0)


def test_unreadable_or_invalid_toml_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("node_id = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_unknown_keys_are_tolerated(caplog):
    cfg = parse_config(base(lat=10.8, mqtt={"host": "h", "password": "p", "qos": 1}))
    assert cfg.node_id == "hp-01-a"
    assert "lat" in caplog.text and "mqtt.qos" in caplog.text


def test_harness_toml_writer_round_trips(tmp_path):
    data = base(groups=["a-1"], player={"kind": "file", "sink_dir": "/x", "realtime": False})
    path = tmp_path / "c.toml"
    path.write_text(to_toml(data))
    assert load_config(path).player.realtime is False
