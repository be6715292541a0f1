"""The server's configuration: file, then LOA_* environment, then overrides; a bad or unknown
key stops the start with a message that names it."""
import pytest

from server.config import ConfigError, load_settings


def test_file_then_environment_then_overrides(tmp_path):
    (tmp_path / "config.toml").write_text('mqtt_port = 1884\ntimezone = "Asia/Bangkok"\n')
    s = load_settings(tmp_path, environ={"LOA_MQTT_PORT": "1885"})
    assert s.mqtt_port == 1885 and s.timezone == "Asia/Bangkok"
    s = load_settings(tmp_path, {"mqtt_port": 1886}, environ={"LOA_MQTT_PORT": "1885"})
    assert s.mqtt_port == 1886
    assert s.database_url == f"sqlite:///{tmp_path.resolve() / 'loa.db'}"


@pytest.mark.parametrize("values,named", [
    ({"mqtt_prot": 1883}, "mqtt_prot"),
    ({"mqtt_port": "many"}, "mqtt_port"),
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"language": "fr"}, "language"),
    ({"tts_engines": ["gtts", "siri"]}, "tts_engines"),
    ({"tts_commands": {"piper": {"args": ["piper"]}}}, "tts_commands.piper"),
    ({"audio_format": "wav"}, "audio"),
    ({"bridge_shared_group": "loa/1"}, "bridge_shared_group"),
    ({"bridge_workers": 2}, "bridge_workers: needs bridge_shared_group"),
    ({"bridge_workers": 65, "bridge_shared_group": "loa"}, "bridge_workers"),
])
def test_bad_setting_is_named(tmp_path, values, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_settings(tmp_path, values, environ={})


def test_broken_config_file_is_reported_with_its_path(tmp_path):
    (tmp_path / "config.toml").write_text("mqtt_port = = 1\n")
    with pytest.raises(ConfigError, match="config.toml"):
        load_settings(tmp_path, environ={})
