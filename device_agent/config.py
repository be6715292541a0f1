"""The agent's configuration: one typed object read from the TOML file that provisioning writes,
checked at start with an error that names the bad key (``ConfigError.key``).

Optional keys beyond the provisioned file (with their defaults): ``fetch_timeout_s`` (30),
``cache_max_mb`` (2048), ``mqtt.keepalive_s`` (30), ``mqtt.reconnect_min_s`` (1),
``mqtt.reconnect_max_s`` (15: a node is back within it of its 4G link's return, however long
the outage; tests/e2e/test_4g_emulation.py), the ``[amp]`` table's keys but ``kind`` (see
AmpConfig),
``mic.device`` (``"default"``: the ALSA capture device of the acoustic self-test; ``""``: none)
and ``mic.min_level_dbfs`` (-50).
"""
from __future__ import annotations

import logging
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import tomli_w

from .files import write_atomic
from .protocol import DEFAULT_PREFIX, load_public_key, valid_name

log = logging.getLogger(__name__)


class PlayerKind(StrEnum):
    """``player.kind``: the program that plays (device_agent.player.make_player)."""
    AUTO = "auto"          # the first of mpv, ffplay, aplay installed
    FILE = "file"          # no sound: each play written to ``sink_dir`` (tests, emulation)
    MPV = "mpv"
    FFPLAY = "ffplay"
    APLAY = "aplay"


class AmpKind(StrEnum):
    """``amp.kind``: what switches the amplifier (device_agent.amp.make_amplifier)."""
    NONE = "none"          # nothing to switch
    GPIO = "gpio"          # a relay and a fault input through libgpiod v2


PLAYER_KINDS = tuple(k.value for k in PlayerKind)
AMP_KINDS = tuple(k.value for k in AmpKind)


class Bias(StrEnum):
    """``amp.fault_bias``: the fault input line's bias (libgpiod's)."""
    AS_IS = "as-is"
    PULL_UP = "pull-up"
    PULL_DOWN = "pull-down"
    DISABLED = "disabled"


BIASES = tuple(b.value for b in Bias)


class ConfigError(ValueError):
    """A configuration value the agent cannot start with; ``key`` is its dotted name."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"config key {key!r}: {problem}")
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class ServerKey:
    kid: str
    public_key: str  # raw 32-byte Ed25519 key, standard base64


@dataclass(frozen=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str = ""
    password: str = field(default="", repr=False)
    tls: bool = False
    ca_file: str = ""
    keepalive_s: int = 30
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 15.0


@dataclass(frozen=True)
class PlayerConfig:
    kind: str = PlayerKind.AUTO
    sink_dir: str = ""
    realtime: bool = True


@dataclass(frozen=True)
class AmpConfig:
    """The amplifier's relay and fault input (``kind = "gpio"``: through libgpiod v2).

    ``chip``: ``/dev/gpiochipN``, ``gpiochipN`` or the chip's label (``pinctrl-bcm2711``,
    ``pinctrl-rp1``). A line is an offset on that chip (on a Raspberry Pi the BCM number) or a
    line name (``GPIO17``). ``gpio_pin`` is the older name of ``relay_line`` (a BCM number).
    ``fault_line`` (optional) is the amplifier's protect/thermal output; ``fault_active_high``
    says which level means a fault, ``fault_bias`` the pin's pull. The relay goes on ``lead_ms``
    before a play starts and off after ``idle_off_s`` with nothing playing or due.
    """

    kind: str = AmpKind.NONE
    gpio_pin: int = 17
    active_high: bool = True
    chip: str = "gpiochip0"
    relay_line: int | str | None = None
    fault_line: int | str | None = None
    fault_active_high: bool = False
    fault_bias: str = Bias.PULL_UP
    fault_debounce_ms: int = 20
    lead_ms: int = 500
    idle_off_s: float = 60.0

    @property
    def relay(self) -> int | str:
        """The relay's line: ``relay_line``, else ``gpio_pin``."""
        return self.gpio_pin if self.relay_line is None else self.relay_line


@dataclass(frozen=True)
class MicConfig:
    """The microphone of the acoustic self-test (device_agent/selftest.py)."""
    device: str = "default"
    min_level_dbfs: float = -50.0


@dataclass(frozen=True)
class SystemConfig:
    reboot_command: str = "systemctl reboot"


@dataclass(frozen=True)
class AgentConfig:
    node_id: str
    mqtt: MqttConfig
    server_keys: tuple[ServerKey, ...]
    topic_prefix: str = DEFAULT_PREFIX
    groups: tuple[str, ...] = ()
    state_dir: Path = Path("/var/lib/loaphuong/agent")
    telemetry_s: int = 30
    tz: str = "Asia/Ho_Chi_Minh"
    player: PlayerConfig = PlayerConfig()
    amp: AmpConfig = AmpConfig()
    system: SystemConfig = SystemConfig()
    mic: MicConfig = MicConfig()
    fetch_timeout_s: float = 30.0
    cache_max_mb: int = 2048

    @property
    def provisioned_keys(self) -> dict[str, str]:
        return {k.kid: k.public_key for k in self.server_keys}


# --- checking values ------------------------------------------------------------------------

def _get(table: Mapping[str, Any], name: str, key: str, kind: type | tuple[type, ...],
         default: Any = ...) -> Any:
    if name not in table:
        if default is ...:
            raise ConfigError(key, "is required")
        return default
    value = table[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise ConfigError(key, f"must be {_kind_name(kinds)}, not {value!r}")
    if not isinstance(value, kinds):
        raise ConfigError(key, f"must be {_kind_name(kinds)}, not {value!r}")
    return value


def _kind_name(kinds: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             list: "a list", dict: "a table"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _table(data: Mapping[str, Any], name: str, known: set[str]) -> Mapping[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(name, "must be a table")
    _warn_unknown(table, known, f"{name}.")
    return table


def _warn_unknown(table: Mapping[str, Any], known: set[str], prefix: str = "") -> None:
    # Unknown keys are logged, not fatal: a newer server may provision keys an older agent lacks.
    for name in table:
        if name not in known:
            log.warning("config key %r is unknown and ignored", prefix + name)


def _positive(value: float, key: str) -> float:
    if value <= 0:
        raise ConfigError(key, f"must be greater than 0, not {value!r}")
    return value


TOP_KEYS = {"node_id", "topic_prefix", "groups", "state_dir", "telemetry_s", "tz", "mqtt",
            "server_keys", "player", "amp", "system", "mic", "fetch_timeout_s", "cache_max_mb"}


def parse_config(data: Mapping[str, Any]) -> AgentConfig:
    """Build and check the config from the parsed TOML mapping. Raises ConfigError."""
    _warn_unknown(data, TOP_KEYS)
    node_id = _node_id(data)
    prefix = _topic_prefix(data)
    groups = _groups(data)
    state_dir = _get(data, "state_dir", "state_dir", str, "/var/lib/loaphuong/agent")
    if not state_dir:
        raise ConfigError("state_dir", "must not be empty")
    telemetry_s = _get(data, "telemetry_s", "telemetry_s", int, 30)
    if telemetry_s < 1:
        raise ConfigError("telemetry_s", f"must be at least 1, not {telemetry_s}")
    tz = _time_zone(data)
    fetch_timeout_s = _positive(float(_get(data, "fetch_timeout_s", "fetch_timeout_s",
                                           (int, float), 30)), "fetch_timeout_s")
    cache_max_mb = int(_positive(_get(data, "cache_max_mb", "cache_max_mb", int, 2048),
                                 "cache_max_mb"))
    mqtt = _mqtt(data, node_id)
    keys = _server_keys(data)
    config = AgentConfig(node_id=node_id, mqtt=mqtt, server_keys=keys,
                         topic_prefix=prefix, groups=groups, state_dir=Path(state_dir),
                         telemetry_s=telemetry_s, tz=tz, player=_player(data), amp=_amp(data),
                         system=_system(data), mic=_mic(data), fetch_timeout_s=fetch_timeout_s,
                         cache_max_mb=cache_max_mb)
    check(config)
    return config


def _node_id(data: Mapping[str, Any]) -> str:
    node_id: str = _get(data, "node_id", "node_id", str)
    if not valid_name(node_id):
        raise ConfigError("node_id", f"{node_id!r} must match [a-z0-9][a-z0-9-]{{1,62}}")
    return node_id


def _topic_prefix(data: Mapping[str, Any]) -> str:
    prefix: str = _get(data, "topic_prefix", "topic_prefix", str, DEFAULT_PREFIX)
    if not prefix or prefix.endswith("/") or any(c in prefix for c in "+#"):
        raise ConfigError("topic_prefix", f"{prefix!r} is not a usable topic prefix")
    return prefix


def _groups(data: Mapping[str, Any]) -> tuple[str, ...]:
    groups: list[str] = _get(data, "groups", "groups", list, [])
    for i, group in enumerate(groups):
        if not valid_name(group):
            raise ConfigError(f"groups[{i}]", f"{group!r} is not a valid group name")
    return tuple(groups)


def _time_zone(data: Mapping[str, Any]) -> str:
    tz: str = _get(data, "tz", "tz", str, "Asia/Ho_Chi_Minh")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("tz", f"{tz!r} is not a known time zone") from None
    return tz


def _mqtt(data: Mapping[str, Any], node_id: str) -> MqttConfig:
    m = _table(data, "mqtt", {"host", "port", "username", "password", "tls", "ca_file",
                              "keepalive_s", "reconnect_min_s", "reconnect_max_s"})
    if "mqtt" not in data:
        raise ConfigError("mqtt", "is required")
    port = _get(m, "port", "mqtt.port", int, 1883)
    if not 1 <= port <= 65535:
        raise ConfigError("mqtt.port", f"must be 1-65535, not {port}")
    mqtt = MqttConfig(
        host=_get(m, "host", "mqtt.host", str),
        port=port,
        username=_get(m, "username", "mqtt.username", str, node_id),
        password=_get(m, "password", "mqtt.password", str),
        tls=_get(m, "tls", "mqtt.tls", bool, False),
        ca_file=_get(m, "ca_file", "mqtt.ca_file", str, ""),
        keepalive_s=int(_positive(_get(m, "keepalive_s", "mqtt.keepalive_s", int, 30),
                                  "mqtt.keepalive_s")),
        reconnect_min_s=_positive(float(_get(m, "reconnect_min_s", "mqtt.reconnect_min_s",
                                             (int, float), 1)), "mqtt.reconnect_min_s"),
        reconnect_max_s=_positive(float(_get(m, "reconnect_max_s", "mqtt.reconnect_max_s",
                                             (int, float), 15)), "mqtt.reconnect_max_s"),
    )
    if not mqtt.host:
        raise ConfigError("mqtt.host", "must not be empty")
    if mqtt.ca_file and not Path(mqtt.ca_file).is_file():
        raise ConfigError("mqtt.ca_file", f"{mqtt.ca_file} is not a file")
    return mqtt


def _server_keys(data: Mapping[str, Any]) -> tuple[ServerKey, ...]:
    raw_keys = _get(data, "server_keys", "server_keys", list)
    if not raw_keys:
        raise ConfigError("server_keys", "needs at least one key")
    keys: list[ServerKey] = []
    for i, entry in enumerate(raw_keys):
        where = f"server_keys[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(where, "must be a table with kid and public_key")
        kid = _get(entry, "kid", f"{where}.kid", str)
        pub = _get(entry, "public_key", f"{where}.public_key", str)
        if not kid:
            raise ConfigError(f"{where}.kid", "must not be empty")
        if any(k.kid == kid for k in keys):
            raise ConfigError(f"{where}.kid", f"{kid!r} appears twice")
        try:
            load_public_key(pub)
        except ValueError as err:
            raise ConfigError(f"{where}.public_key", str(err)) from None
        keys.append(ServerKey(kid, pub))
    return tuple(keys)


def _player(data: Mapping[str, Any]) -> PlayerConfig:
    p = _table(data, "player", {"kind", "sink_dir", "realtime"})
    return PlayerConfig(kind=_get(p, "kind", "player.kind", str, PlayerKind.AUTO),
                        sink_dir=_get(p, "sink_dir", "player.sink_dir", str, ""),
                        realtime=_get(p, "realtime", "player.realtime", bool, True))


AMP_KEYS = {"kind", "gpio_pin", "active_high", "chip", "relay_line", "fault_line",
            "fault_active_high", "fault_bias", "fault_debounce_ms", "lead_ms", "idle_off_s"}


def _amp(data: Mapping[str, Any]) -> AmpConfig:
    a = _table(data, "amp", AMP_KEYS)
    amp = AmpConfig(
        kind=_get(a, "kind", "amp.kind", str, AmpKind.NONE),
        gpio_pin=_get(a, "gpio_pin", "amp.gpio_pin", int, 17),
        active_high=_get(a, "active_high", "amp.active_high", bool, True),
        chip=_get(a, "chip", "amp.chip", str, "gpiochip0"),
        relay_line=_line(a, "relay_line"),
        fault_line=_line(a, "fault_line"),
        fault_active_high=_get(a, "fault_active_high", "amp.fault_active_high", bool, False),
        fault_bias=_get(a, "fault_bias", "amp.fault_bias", str, Bias.PULL_UP),
        fault_debounce_ms=_get(a, "fault_debounce_ms", "amp.fault_debounce_ms", int, 20),
        lead_ms=_get(a, "lead_ms", "amp.lead_ms", int, 500),
        idle_off_s=float(_get(a, "idle_off_s", "amp.idle_off_s", (int, float), 60)))
    if not amp.chip.strip():
        raise ConfigError("amp.chip", "must not be empty")
    if amp.fault_bias not in BIASES:
        raise ConfigError("amp.fault_bias", f"must be one of {', '.join(BIASES)}, "
                                            f"not {amp.fault_bias!r}")
    if not 0 <= amp.fault_debounce_ms <= 1000:
        raise ConfigError("amp.fault_debounce_ms", f"must be 0-1000, not {amp.fault_debounce_ms}")
    if not 0 <= amp.lead_ms <= 10_000:
        raise ConfigError("amp.lead_ms", f"must be 0-10000 ms, not {amp.lead_ms}")
    _positive(amp.idle_off_s, "amp.idle_off_s")
    if "gpio_pin" in a and amp.relay_line is not None and amp.relay_line != amp.gpio_pin:
        raise ConfigError("amp.relay_line", f"{amp.relay_line!r} contradicts amp.gpio_pin "
                                            f"{amp.gpio_pin} (its older name): keep one")
    if amp.fault_line is not None and amp.fault_line == amp.relay:
        raise ConfigError("amp.fault_line", "must not be the relay's line")
    return amp


def _line(table: Mapping[str, Any], name: str) -> int | str | None:
    """A GPIO line: an offset on the chip (>= 0) or a line name."""
    line: int | str | None = _get(table, name, f"amp.{name}", (int, str), None)
    if isinstance(line, int) and line < 0:
        raise ConfigError(f"amp.{name}", f"must be a line offset (0 or more) or a name, not {line}")
    if isinstance(line, str) and not line.strip():
        raise ConfigError(f"amp.{name}", "must not be empty")
    return line


def _system(data: Mapping[str, Any]) -> SystemConfig:
    s = _table(data, "system", {"reboot_command"})
    return SystemConfig(reboot_command=_get(s, "reboot_command", "system.reboot_command", str,
                                            "systemctl reboot"))


def _mic(data: Mapping[str, Any]) -> MicConfig:
    m = _table(data, "mic", {"device", "min_level_dbfs"})
    level = float(_get(m, "min_level_dbfs", "mic.min_level_dbfs", (int, float), -50.0))
    if not -120 <= level <= 0:
        raise ConfigError("mic.min_level_dbfs", f"must be -120 to 0 dBFS, not {level:g}")
    return MicConfig(device=_get(m, "device", "mic.device", str, "default"),
                     min_level_dbfs=level)


def check(config: AgentConfig) -> None:
    """The checks that also apply after command-line overrides."""
    if config.player.kind not in PLAYER_KINDS:
        raise ConfigError("player.kind", f"must be one of {', '.join(PLAYER_KINDS)}, "
                                         f"not {config.player.kind!r}")
    if config.player.kind == PlayerKind.FILE and not config.player.sink_dir:
        raise ConfigError("player.sink_dir", "is required when player.kind is \"file\"")
    if config.amp.kind not in AMP_KINDS:
        raise ConfigError("amp.kind", f"must be one of {', '.join(AMP_KINDS)}, "
                                      f"not {config.amp.kind!r}")
    if not 0 <= config.amp.gpio_pin <= 53:
        raise ConfigError("amp.gpio_pin", f"must be a BCM GPIO number 0-53, "
                                          f"not {config.amp.gpio_pin}")
    if not config.system.reboot_command.strip():
        raise ConfigError("system.reboot_command", "must not be empty")


def load_config(path: str | Path, *, state_dir: str | Path | None = None,
                player: str | None = None, sink_dir: str | Path | None = None) -> AgentConfig:
    """Read the TOML file at ``path``; the keyword arguments (command-line flags) override it."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as err:
        raise ConfigError("--config", f"cannot read {path}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError("--config", f"{path} is not valid TOML: {err}") from None
    config = parse_config(data)
    return with_overrides(config, state_dir=state_dir, player=player, sink_dir=sink_dir)


def with_overrides(config: AgentConfig, *, state_dir: str | Path | None = None,
                   player: str | None = None, sink_dir: str | Path | None = None) -> AgentConfig:
    """``config`` with the command-line flags applied, checked again."""
    if state_dir:
        config = replace(config, state_dir=Path(state_dir))
    if player or sink_dir:
        config = replace(config, player=replace(
            config.player, kind=player or config.player.kind,
            sink_dir=str(sink_dir) if sink_dir else config.player.sink_dir))
    check(config)
    return config


def local_copy(provisioned_config: str, folder: str | Path, ca_pem: str | None = None) -> str:
    """A provisioned config made fit for an agent that runs on a development machine or in a
    test (``make run``'s demo nodes): ``reboot`` writes ``folder/rebooted`` instead of
    rebooting the host, and the CA certificate, when given, is saved as ``folder/ca.pem``."""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    data = tomllib.loads(provisioned_config)
    data.setdefault("system", {})["reboot_command"] = \
        f"touch {shlex.quote(str(folder / 'rebooted'))}"
    if ca_pem:
        write_atomic(folder / "ca.pem", ca_pem.encode("ascii"))
        data.setdefault("mqtt", {})["ca_file"] = str(folder / "ca.pem")
    return tomli_w.dumps(data)
