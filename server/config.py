"""The server's one typed configuration object: defaults, then instance/config.toml, then LOA_*
environment variables, then a test's mapping; validated at start with an error naming the key."""
from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from audio.pipeline import AudioFormat, AudioSettings, Chime
from audio.tts import DEFAULT_ENGINES, DEFAULT_VOICE, Container


# the languages of the translation catalogue (server.i18n); the first is the default
LANGUAGES = ("vi", "en")
_EITHER_LANGUAGE = " or ".join(LANGUAGES)


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the key."""


@dataclass
class Settings:
    instance_path: str = "instance"
    secret_key: str = ""
    database_url: str = ""                 # default: sqlite in the instance folder
    # SQLite: how long a write waits for another process's write lock before it fails (the
    # bridge then holds what nodes sent, unconfirmed, and tries again)
    database_busy_timeout_s: float = 30.0
    media_dir: str = ""                    # default: instance/media
    public_url: str = "http://127.0.0.1:8080"  # how nodes reach /media/
    language: str = LANGUAGES[0]
    timezone: str = "Asia/Ho_Chi_Minh"
    # broker
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_username: str = "loa-server"
    mqtt_password: str = ""
    mqtt_tls: bool = False                 # the server's own connection uses TLS
    mqtt_tls_port: int = 0                 # the broker's TLS listener for nodes; 0: none
    ca_file: str = ""                      # PEM of the CA that signed the broker's certificate
    mqtt_max_packet_bytes: int = 1048576   # the broker's max_packet_size (make run renders it)
    topic_prefix: str = "loa/v1"
    node_mqtt_host: str = ""               # what provisioned nodes are told; default mqtt_host
    node_mqtt_port: int = 0                # default mqtt_tls_port, else mqtt_port
    mosquitto_dir: str = ""                # where passwd/acl live; empty: broker not managed
    node_telemetry_s: int = 30             # what provisioned agents are told
    bulk_max_nodes: int = 10000            # rows of one bulk provisioning or CSV import
    provision_token_ttl_s: int = 24 * 3600  # a one-time provisioning token (install-pi.sh)
    # the largest message the bridge takes from a node, per topic (bytes; larger is refused)
    node_max_state_bytes: int = 4096
    node_max_telemetry_bytes: int = 16384
    node_max_event_bytes: int = 16384
    node_max_clock_offset_ms: int = 100    # a node's clock further off NTP raises clock_off
    # signing
    signing_key_file: str = ""             # default: instance/signing_key.json
    signing_kid: str = "srv-2026-1"
    command_ttl_s: int = 600               # how long an immediate command stays valid
    command_resend_s: int = 30             # re-send a command an online node has not acked
    update_ttl_s: int = 7 * 24 * 3600      # how long an agent update command stays valid
    desired_window_h: int = 48
    schedule_lead_s: int = 120             # a timed broadcast is sent this long before its start
    # the airplay report waits this long after a planned item's end for the node's report
    # before it calls the item missed (no_report); until then it is pending
    airplay_grace_s: int = 300
    # speech
    tts_engines: list[str] = field(default_factory=lambda: list(DEFAULT_ENGINES))
    gtts_timeout_s: float = 4.0
    gtts_endpoint: str = ""                # another base URL for gTTS (a proxy; tests)
    # local speech programs usable as engines, e.g. a neural voice the user installs:
    # [tts_commands.piper] argv = ["piper", "--model", "vi.onnx", "--output_file", "-"]
    tts_commands: dict[str, dict[str, Any]] = field(default_factory=dict)
    default_voice: str = DEFAULT_VOICE
    speech_cache_dir: str = ""             # default: instance/cache
    # broadcast-ready audio
    audio_target_lufs: float = -16.0
    audio_true_peak_dbtp: float = -1.0
    audio_format: str = AudioFormat.MP3    # an audio.pipeline.AudioFormat
    audio_bitrate_kbps: int = 0            # 0: the format's own (audio.pipeline.FORMATS)
    max_upload_mb: float = 50.0
    max_upload_minutes: float = 30.0
    token_ttl_h: int = 24 * 7
    # web and login security
    cookie_secure: bool = False            # Secure cookie; on anyway when public_url is https
    session_ttl_h: int = 12                # a browser login lasts at most this long
    session_idle_min: int = 120            # and ends after this long unused
    login_limit_ip: str = "20/minute"      # failed logins allowed per client address
    login_limit_user: str = "5/minute"     # failed logins allowed per username
    # reverse proxies in front of the web processes whose X-Forwarded-For and -Proto are
    # believed (0: none; the client is the connection's address, a proxy's if there is one)
    trusted_proxies: int = 0
    password_min_length: int = 10
    worker_stale_s: int = 20               # /healthz: the dispatcher's broker report is this fresh
    # two dispatchers may run: the one holding the lease (server/lease.py) acts, renewing it
    # every lease_renew_s for lease_ttl_s; it stops acting lease_renew_s before it would expire
    lease_ttl_s: float = 20.0
    lease_renew_s: float = 5.0
    # several processes may record what nodes send (docs/scaling.md): with a group name, the
    # dispatcher and bridge_workers processes (python -m schedules --bridge-only N, broker
    # account <mqtt_username>-bridge-N) share telemetry and events through the MQTT shared
    # subscription $share/<group>/...; "": the dispatcher alone, on plain subscriptions
    bridge_shared_group: str = ""
    bridge_workers: int = 0
    # alerts (server/alerts.py), evaluated by the dispatcher every alert_eval_s
    alert_eval_s: int = 30
    alert_offline_after_s: int = 300       # offline (or silent) this long before an alert
    alert_offline_critical_after_s: int = 3600  # offline this long: critical; 0: never
    alert_alarm_lookback_h: int = 24       # node alarms read this far back
    alert_missed_lookback_h: int = 6       # missed slots (the airplay report) this far back
    alert_media_failures: int = 3          # failed media downloads that make media_failing
    alert_media_window_h: int = 24         # ... within this many hours
    # notifications: a webhook (JSON POST) and e-mail, for every alert (global) and per area
    alert_language: str = ""               # vi or en; "": language
    alert_webhook_url: str = ""
    alert_webhook_secret: str = ""         # HMAC-SHA256 of the body in X-Loa-Signature
    alert_email_to: list[str] = field(default_factory=list)
    # per area code, for alerts of that area and below: {webhook_url, email_to, language}
    alert_routes: dict[str, dict[str, Any]] = field(default_factory=dict)
    alert_notify_timeout_s: float = 10.0
    alert_notify_retries: int = 3          # tries after the first, waiting backoff, 2x, 4x ...
    alert_notify_backoff_s: float = 2.0
    smtp_host: str = ""                    # "": no e-mail
    smtp_port: int = 587
    smtp_starttls: bool = True
    smtp_user: str = ""                    # "": no login
    smtp_password: str = ""
    smtp_from: str = "loaphuong@localhost"
    smtp_ca_file: str = ""                 # PEM to verify the SMTP server with; "": system CAs
    outbox_stale_s: int = 30               # /healthz alarms when an unsent command is this old
    # the fleet map's tiles, a Leaflet URL template ("https://tiles.example/{z}/{x}/{y}.png");
    # "": no tiles (the map shows the nodes and the areas' outlines on a blank ground)
    map_tile_url: str = ""
    # telemetry retention (server/retention.py), run by the dispatcher every telemetry_retention_s:
    # raw rows kept this many days, hourly aggregates this many; play logs and events are never
    # pruned (a setting that would is refused)
    telemetry_raw_days: int = 7
    telemetry_hourly_days: int = 365
    telemetry_prune_batch: int = 5000      # rows deleted per transaction
    telemetry_retention_s: int = 300
    telemetry_rollup_grace_s: int = 120    # an hour is aggregated this long after it ended

    def audio_settings(self, chime: str | None = None) -> AudioSettings:
        """The pipeline's settings from this config (and a ward's chime choice)."""
        return AudioSettings(target_lufs=self.audio_target_lufs,
                             true_peak_dbtp=self.audio_true_peak_dbtp, fmt=self.audio_format,
                             bitrate_kbps=self.audio_bitrate_kbps or None,
                             chime=chime or Chime.NONE, max_upload_mb=self.max_upload_mb,
                             max_upload_minutes=self.max_upload_minutes)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def validate(self) -> Settings:
        """This, when every value can be used; otherwise ConfigError naming the first bad key."""
        for check in _CHECKS:
            problem = check(self)
            if problem:
                raise ConfigError(problem)
        return self


# --- validation: one check per line, in this order; each gives the problem or None ------------

Check = Callable[[Settings], str | None]


def _rule(ok: Callable[[Settings], bool], message: str) -> Check:
    """A check from a condition and its message (str.format'ed with s=the settings)."""
    return lambda s: None if ok(s) else message.format(s=s)


def _timezone(s: Settings) -> str | None:
    try:
        ZoneInfo(s.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return f"timezone: unknown time zone {s.timezone!r}"
    return None


def _mqtt_username(s: Settings) -> str | None:
    from .mosquitto import SERVER_ACCOUNT_PREFIX
    if s.mqtt_username.startswith(SERVER_ACCOUNT_PREFIX):
        return None
    return (f"mqtt_username: a server account starts with {SERVER_ACCOUNT_PREFIX!r} "
            "(node ids never do)")


def _tts_commands(s: Settings) -> str | None:
    for name, spec in s.tts_commands.items():
        argv = spec.get("argv") if isinstance(spec, dict) else None
        if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
            return f"tts_commands.{name}.argv: a list of program and arguments"
        extra = set(spec) - {"argv", "fmt", "voices", "timeout_s"}
        if extra:
            return f"tts_commands.{name}: unknown keys {sorted(extra)}"
        if spec.get("fmt", Container.WAV) not in tuple(Container):
            return f"tts_commands.{name}.fmt: {' or '.join(Container)}"
    return None


def _tts_engines(s: Settings) -> str | None:
    from audio.tts import unknown_engines
    unknown = unknown_engines(s.tts_engines) - set(s.tts_commands)
    if unknown or not s.tts_engines:
        return f"tts_engines: unknown engines {sorted(unknown)}"
    return None


def _audio(s: Settings) -> str | None:
    try:
        s.audio_settings()
    except ValueError as err:
        return f"audio: {err}"
    return None


def _bridge_limits(s: Settings) -> str | None:
    from server.bridge import BridgeLimits
    try:
        BridgeLimits.from_settings(s)
    except ValueError as err:
        return f"node_max_{err}"
    return None


def _login_limits(s: Settings) -> str | None:
    from limits import parse_many
    for name in ("login_limit_ip", "login_limit_user"):
        try:
            parse_many(getattr(s, name))
        except ValueError:
            return f"{name}: {getattr(s, name)!r} is not a rate like 5/minute"
    return None


ROUTE_KEYS = frozenset({"webhook_url", "email_to", "language"})


def _alert_routes(s: Settings) -> str | None:
    for code, route in s.alert_routes.items():
        if not isinstance(route, dict) or set(route) - ROUTE_KEYS:
            return f"alert_routes.{code}: a table of {', '.join(sorted(ROUTE_KEYS))}"
        url = route.get("webhook_url", "")
        if not isinstance(url, str) or url and not url.startswith(("http://", "https://")):
            return f"alert_routes.{code}.webhook_url: an http(s) URL"
        to = route.get("email_to", [])
        if not isinstance(to, list) or not all(isinstance(a, str) and "@" in a for a in to):
            return f"alert_routes.{code}.email_to: a list of e-mail addresses"
        if route.get("language", LANGUAGES[0]) not in LANGUAGES:
            return f"alert_routes.{code}.language: {_EITHER_LANGUAGE}"
    return None


_CHECKS: tuple[Check, ...] = (
    _rule(lambda s: s.language in LANGUAGES,
          f"language: must be {_EITHER_LANGUAGE}, not {{s.language!r}}"),
    _timezone,
    _rule(lambda s: 0 < int(s.mqtt_port) < 65536, "mqtt_port: {s.mqtt_port} is not a port"),
    _mqtt_username,
    _rule(lambda s: 0 <= int(s.mqtt_tls_port) < 65536,
          "mqtt_tls_port: {s.mqtt_tls_port} is not a port"),
    _rule(lambda s: not s.mqtt_tls_port or os.path.isfile(s.ca_file),
          "ca_file: {s.ca_file!r} is not a file (mqtt_tls_port needs the CA nodes verify the "
          "broker with)"),
    _rule(lambda s: s.mqtt_max_packet_bytes >= 65536, "mqtt_max_packet_bytes: at least 65536"),
    _tts_commands,
    _tts_engines,
    _audio,
    _bridge_limits,
    _rule(lambda s: s.bulk_max_nodes >= 1, "bulk_max_nodes: at least 1"),
    _rule(lambda s: s.command_ttl_s >= 10, "command_ttl_s: must be at least 10 seconds"),
    _rule(lambda s: s.update_ttl_s >= 60, "update_ttl_s: must be at least 60 seconds"),
    _rule(lambda s: s.provision_token_ttl_s >= 60,
          "provision_token_ttl_s: must be at least 60 seconds"),
    _rule(lambda s: s.database_busy_timeout_s > 0,
          "database_busy_timeout_s: more than 0 seconds"),
    _rule(lambda s: s.airplay_grace_s >= 0, "airplay_grace_s: must be 0 or more seconds"),
    _rule(lambda s: re.fullmatch(r"[A-Za-z0-9_-]{0,32}", s.bridge_shared_group) is not None,
          "bridge_shared_group: up to 32 letters, digits, - or _ (no / + #), not "
          "{s.bridge_shared_group!r}"),
    _rule(lambda s: 0 <= s.bridge_workers <= 64, "bridge_workers: from 0 to 64"),
    _rule(lambda s: not s.bridge_workers or bool(s.bridge_shared_group),
          "bridge_workers: needs bridge_shared_group (without it every worker would record "
          "every message)"),
    _rule(lambda s: s.lease_renew_s > 0 and s.lease_ttl_s > 2 * s.lease_renew_s,
          "lease_renew_s: more than 0; lease_ttl_s: more than twice lease_renew_s"),
    _login_limits,
    _rule(lambda s: 0 <= int(s.trusted_proxies) <= 5, "trusted_proxies: 0 to 5"),
    _rule(lambda s: s.alert_eval_s >= 1 and min(
        s.alert_offline_after_s, s.alert_offline_critical_after_s, s.alert_notify_retries) >= 0,
        "alert_eval_s: at least 1; alert_offline_after_s, alert_offline_critical_after_s, "
        "alert_notify_retries: 0 or more"),
    _rule(lambda s: min(s.alert_alarm_lookback_h, s.alert_missed_lookback_h,
                        s.alert_media_window_h, s.alert_media_failures) >= 1,
          "alert_alarm_lookback_h, alert_missed_lookback_h, alert_media_window_h, "
          "alert_media_failures: at least 1"),
    _rule(lambda s: s.alert_language in ("", *LANGUAGES),
          f"alert_language: {', '.join(LANGUAGES)} or empty, not {{s.alert_language!r}}"),
    _rule(lambda s: not s.alert_webhook_url or s.alert_webhook_url.startswith(
        ("http://", "https://")), "alert_webhook_url: an http(s) URL"),
    _rule(lambda s: all(isinstance(a, str) and "@" in a for a in s.alert_email_to),
          "alert_email_to: a list of e-mail addresses"),
    _alert_routes,
    _rule(lambda s: not s.map_tile_url or s.map_tile_url.startswith(("http://", "https://", "/")),
          "map_tile_url: an http(s) URL template or a path on this server"),
    _rule(lambda s: 0 < int(s.smtp_port) < 65536, "smtp_port: {s.smtp_port} is not a port"),
    _rule(lambda s: min(s.session_ttl_h, s.session_idle_min, s.password_min_length) >= 1,
          "session_ttl_h, session_idle_min, password_min_length: at least 1"),
    _rule(lambda s: 1 <= s.telemetry_raw_days <= s.telemetry_hourly_days,
          "telemetry_raw_days: at least 1, and telemetry_hourly_days at least as many"),
    _rule(lambda s: s.telemetry_prune_batch >= 100 and s.telemetry_retention_s >= 10
          and s.telemetry_rollup_grace_s >= 0,
          "telemetry_prune_batch: at least 100; telemetry_retention_s: at least 10; "
          "telemetry_rollup_grace_s: 0 or more"),
    _rule(lambda s: bool(s.topic_prefix) and not s.topic_prefix.endswith("/"),
          "topic_prefix: {s.topic_prefix!r} is not a topic prefix"),
)


# a setting that would prune play logs or events (the evidence of what aired and what nodes
# said): refused by name rather than as merely unknown
EVIDENCE_RETENTION = re.compile(
    r"^(play_?logs?|events?|alarms?|airplay)_.*(days|hours|retention|keep|prune|ttl|age)",
    re.IGNORECASE)


def _coerce(name: str, value: Any, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off", ""):
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ValueError(value)
            return dict(value)
        if isinstance(default, list):
            return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) \
                else list(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: {value!r} is not a valid {type(default).__name__}") from None


def load_settings(instance_path: str | os.PathLike[str],
                  overrides: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from the sources in order; raise ConfigError naming a bad or unknown key."""
    environ = os.environ if environ is None else environ
    base = Settings()
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(Settings)}
    values: dict[str, Any] = {}
    file = Path(instance_path) / "config.toml"
    if file.exists():
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{file}: {err}") from None
        values.update(data)
    for name in environ:  # LOA_PLAYLOG_DAYS as playlog_days in config.toml
        if name.startswith("LOA_") and EVIDENCE_RETENTION.match(name[4:]):
            values[name[4:].lower()] = environ[name]
    for name in fields:
        env = environ.get("LOA_" + name.upper())
        if env is not None:
            values[name] = env
    values.update(overrides or {})
    for key in values:
        if EVIDENCE_RETENTION.match(key):
            raise ConfigError(f"{key}: play logs and events are kept as evidence and never "
                              "pruned; remove this setting")
        if key not in fields:
            raise ConfigError(f"{key}: unknown setting")
    kwargs = {k: _coerce(k, v, fields[k]) for k, v in values.items()}
    kwargs["instance_path"] = str(Path(instance_path).resolve())
    settings = Settings(**kwargs)
    inst = Path(settings.instance_path)
    if not settings.database_url:
        settings.database_url = f"sqlite:///{inst / 'loa.db'}"
    settings.media_dir = settings.media_dir or str(inst / "media")
    settings.signing_key_file = settings.signing_key_file or str(inst / "signing_key.json")
    settings.speech_cache_dir = settings.speech_cache_dir or str(inst / "cache")
    settings.node_mqtt_host = settings.node_mqtt_host or settings.mqtt_host
    settings.node_mqtt_port = settings.node_mqtt_port or settings.mqtt_tls_port or \
        settings.mqtt_port
    return settings.validate()
