#!/usr/bin/env bash
# Install (or upgrade) the LoaPhuong speaker node agent on a Raspberry Pi (Raspberry Pi OS Lite,
# bookworm) or any Debian 12+ machine with a sound card.
#
#   sudo hardware/install-pi.sh --provision ANSWER [--token TOKEN] [--wheel FILE]
#                               [--wheelhouse DIR] [--player KIND] [--volume PCT] [--no-start]
#   sudo hardware/install-pi.sh                  # again later: upgrades, keeps config and state
#
# --provision  the server's provisioning answer (POST /api/v1/nodes): a file or an http(s) URL,
#              either the answer's JSON (its "config" becomes the agent's config, its
#              "mqtt.ca_pem" the broker's CA) or the agent.toml alone. Required on the first
#              install; later runs keep /etc/loaphuong/agent.toml unless given a new one.
# --token      with a URL: sent as "Authorization: Bearer TOKEN" (a one-time token); the
#              answer is fetched once, with curl, and never written anywhere but the config.
#              LOA_PROVISION_TOKEN in the environment does the same, out of `ps`'s sight
# --config     the agent.toml alone (the same as --provision FILE with a TOML file)
# --ca         the broker's CA certificate (PEM) when the answer is not JSON
# --source     the LoaPhuong source tree whose agent distribution (agent/) is built and
#              installed (default: the tree this script is in)
# --wheel      install this agent wheel instead (`pip wheel --no-deps -w dist ./agent` on any
#              machine); then the Pi needs no source tree, only this script's hardware/ folder
# --wheelhouse install the agent's dependencies from this folder only, offline
#              (`scripts/agent_wheelhouse.py --arch aarch64 --dest DIR` fetches one for a Pi)
# --player     rewrite player.kind in the installed config ("auto" picks mpv, then ffplay,
#              then ffmpeg+aplay)
# --volume     set the ALSA mixer to this level (e.g. 85%) and store it; by default it is set
#              to 85% on the first install only, so a level tuned on site survives upgrades
# --mixer      the ALSA simple control to set (default: the first of Master, PCM, Digital,
#              Speaker, Headphone the default card has)
# --no-start   install and enable the unit, do not (re)start it
#
# What it makes (read-mostly: only /var/lib/loaphuong/agent is written while the node runs):
#   /opt/loa-agent/venv          the agent distribution `loaphuong-agent` and its own
#                                dependencies only (none of the server's)
#   /etc/loaphuong/agent.toml    the config (0640 root:loa) and ca.pem
#   /var/lib/loaphuong/agent     state and cache: replay memory, event outbox, desired state,
#                                media cache (0750 loa:loa)
#   user `loa` (system; groups audio, gpio, video), chrony (steps a clock that is far off),
#   journald limits (a small persistent journal), a polkit rule for the `reboot` command, and
#   the unit loa-agent.service (Type=notify, WatchdogSec: systemd restarts a hung agent).
# A node installed by the older script (/etc/loa-agent, /var/lib/loa-agent) is migrated.
# Without systemd as PID 1 (a chroot, a container) the unit is installed and enabled but not
# started, and the script says so.
# Re-running it upgrades in place and keeps the state folder; the version it installs replaces any
# over-the-air release (releases/current is cleared). systemd starts loa-agent-launcher, which runs
# the agent and applies and rolls back updates.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SOURCE="$(cd "$HERE/.." && pwd)"
PROVISION=""
TOKEN="${LOA_PROVISION_TOKEN:-}"
CA=""
PLAYER=""
WHEEL=""
WHEELHOUSE=""
VOLUME=""
MIXER=""
START=1
PREFIX=/opt/loa-agent
ETC=/etc/loaphuong
STATE=/var/lib/loaphuong/agent
OLD_ETC=/etc/loa-agent
OLD_STATE=/var/lib/loa-agent
USER_NAME=loa
UNIT=loa-agent.service
FIRST_VOLUME=85%

usage() { sed -n '2,43p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
say() { echo "== $*"; }
abspath() { local d; d="$(cd "$(dirname "$1")" && pwd)"; echo "${d%/}/$(basename "$1")"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --provision|--config) PROVISION="$2"; shift 2 ;;
        --token) TOKEN="$2"; shift 2 ;;
        --ca) CA="$(abspath "$2")"; shift 2 ;;
        --source) SOURCE="$(cd "$2" && pwd)"; shift 2 ;;
        --wheel) WHEEL="$(abspath "$2")"; shift 2 ;;
        --wheelhouse) WHEELHOUSE="$(cd "$2" && pwd)"; shift 2 ;;
        --player) PLAYER="$2"; shift 2 ;;
        --volume) VOLUME="$2"; shift 2 ;;
        --mixer) MIXER="$2"; shift 2 ;;
        --no-start) START=0; shift ;;
        -h|--help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 ;;
    esac
done

# --- checks before anything changes -----------------------------------------------------------
[ "$(id -u)" -eq 0 ] || { echo "run as root (sudo)" >&2; exit 1; }
case "$PROVISION" in
    http://*|https://*) ;;
    "") ;;
    *) [ -f "$PROVISION" ] || { echo "no such provisioning file: $PROVISION" >&2; exit 1; }
       PROVISION="$(abspath "$PROVISION")" ;;
esac
[ -z "$TOKEN" ] || case "$PROVISION" in http*) ;; *)
    echo "--token goes with a provisioning URL" >&2; exit 1 ;; esac
# a token is one word of URL-safe characters (it is written into curl's config below)
[ -z "$TOKEN" ] || [[ "$TOKEN" =~ ^[A-Za-z0-9._~+/=-]+$ ]] \
    || { echo "the token holds characters a token never has" >&2; exit 1; }
if [ -n "$WHEEL" ]; then
    [ -f "$WHEEL" ] || { echo "no such wheel: $WHEEL" >&2; exit 1; }
else
    [ -f "$SOURCE/agent/pyproject.toml" ] && [ -d "$SOURCE/device_agent" ] \
        || { echo "$SOURCE is not a LoaPhuong source tree (agent/, device_agent/)" >&2; exit 1; }
fi
FIRST_INSTALL=0
if [ ! -f "$ETC/agent.toml" ] && [ ! -f "$OLD_ETC/agent.toml" ]; then
    FIRST_INSTALL=1
    [ -n "$PROVISION" ] || { echo "--provision is required on the first install" >&2; exit 1; }
fi
[ -n "$VOLUME" ] || { [ "$FIRST_INSTALL" -eq 0 ] || VOLUME="$FIRST_VOLUME"; }

BOOTED=0
[ -d /run/systemd/system ] && BOOTED=1   # systemd is PID 1 (sd_booted)
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
chmod 0700 "$WORK"

say "system packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends python3 python3-venv ca-certificates curl \
    ffmpeg mpv alsa-utils chrony gpiod
# ModemManager only where a 4G modem is used; telemetry reports null for signal without it.
apt-get install -y -q --no-install-recommends modemmanager \
    || echo "(modemmanager not installed: no 4G signal readings)"
# iw reads a Wi-Fi link's SSID and bitrate for telemetry (Raspberry Pi OS ships it already).
apt-get install -y -q --no-install-recommends iw \
    || echo "(iw not installed: no Wi-Fi SSID or bitrate readings)"

# --- the provisioning answer: JSON (config + CA) or the TOML config alone ---------------------
if [ -n "$PROVISION" ]; then
    say "provisioning answer"
    case "$PROVISION" in
        http://*|https://*)
            # the token goes to curl on its stdin (a config), not on its command line
            { [ -z "$TOKEN" ] || printf 'header = "Authorization: Bearer %s"\n' "$TOKEN"; } \
                | curl -fsS --retry 3 --max-time 60 -K - -o "$WORK/answer" "$PROVISION" \
                || { echo "could not fetch the provisioning answer from $PROVISION" >&2; exit 1; }
            ;;
        *) cp "$PROVISION" "$WORK/answer" ;;
    esac
    python3 - "$WORK/answer" "$WORK" <<'EOF'
import json, sys, tomllib
answer, work = sys.argv[1], sys.argv[2]
text = open(answer, encoding="utf-8").read()
if text.lstrip().startswith("{"):
    data = json.loads(text)
    if not isinstance(data.get("config"), str):
        sys.exit("the provisioning answer has no \"config\"")
    text = data["config"]
    ca = (data.get("mqtt") or {}).get("ca_pem")
    if ca:
        open(f"{work}/ca.pem", "w", encoding="ascii").write(ca)
try:
    tomllib.loads(text)
except tomllib.TOMLDecodeError as err:
    sys.exit(f"the provisioning answer is neither JSON nor the agent's TOML: {err}")
open(f"{work}/agent.toml", "w", encoding="utf-8").write(text)
EOF
    [ -n "$CA" ] || { [ ! -f "$WORK/ca.pem" ] || CA="$WORK/ca.pem"; }
fi

say "user $USER_NAME"
if ! id "$USER_NAME" >/dev/null 2>&1; then
    useradd --system --home-dir "$STATE" --no-create-home --shell /usr/sbin/nologin "$USER_NAME"
elif [ "$(getent passwd "$USER_NAME" | cut -d: -f6)" != "$STATE" ]; then
    usermod --home "$STATE" "$USER_NAME"
fi
getent group gpio >/dev/null || groupadd --system gpio
# video: /dev/vchiq, which `vcgencmd get_throttled` (under-voltage in telemetry) needs
getent group video >/dev/null || groupadd --system video
usermod -a -G audio,gpio,video "$USER_NAME"

# --- an upgrade stops the agent first (its state may move) ------------------------------------
if [ "$BOOTED" -eq 1 ] && systemctl is-active --quiet "$UNIT"; then
    say "stopping the running agent"
    systemctl stop "$UNIT"
fi

say "state and cache in $STATE"
install -d -m 0755 -o root -g root /var/lib/loaphuong
if [ -d "$OLD_STATE" ] && [ ! -L "$OLD_STATE" ]; then
    if [ ! -e "$STATE" ] || [ -z "$(ls -A "$STATE")" ]; then
        rmdir "$STATE" 2>/dev/null || true
        mv "$OLD_STATE" "$STATE"
        echo "moved the old state $OLD_STATE to $STATE"
    else
        echo "both $OLD_STATE and $STATE hold state: kept $STATE, left $OLD_STATE alone" >&2
    fi
fi
install -d -m 0750 -o "$USER_NAME" -g "$USER_NAME" "$STATE"
chown -R "$USER_NAME:$USER_NAME" "$STATE"

say "virtualenv in $PREFIX"
PIP_OPTS=()
[ -z "$WHEELHOUSE" ] || PIP_OPTS=(--no-index --find-links "$WHEELHOUSE")
python3 -m venv "$PREFIX/venv"
[ -n "$WHEELHOUSE" ] || "$PREFIX/venv/bin/pip" install -q --upgrade pip
# An install made before the agent had its own distribution held the whole project.
if "$PREFIX/venv/bin/pip" show -q loaphuong >/dev/null 2>&1; then
    "$PREFIX/venv/bin/pip" uninstall -q -y loaphuong
fi
if [ -z "$WHEEL" ]; then
    # Built from a copy of agent/ and device_agent/, so the source tree stays as it was.
    cp -r "$SOURCE/agent" "$SOURCE/device_agent" "$WORK/"
    "$PREFIX/venv/bin/pip" wheel -q --no-deps "${PIP_OPTS[@]}" --wheel-dir "$WORK/dist" \
        "$WORK/agent"
    WHEEL="$(ls "$WORK"/dist/loaphuong_agent-*.whl)"
fi
"$PREFIX/venv/bin/pip" install -q --upgrade "${PIP_OPTS[@]}" "$WHEEL"   # with its dependencies
"$PREFIX/venv/bin/pip" install -q --no-deps --force-reinstall "$WHEEL"  # new code, same version
"$PREFIX/venv/bin/python" -c "import device_agent.agent" # fails loudly if something is missing
# The version just installed is what runs: forget the over-the-air release pointer (and an
# update half-way; the unpacked releases stay until the next update prunes them).
rm -f "$STATE/releases/current" "$STATE/releases/pending.json"
echo "agent $("$PREFIX/venv/bin/loa-agent" --version)"

say "config in $ETC"
install -d -m 0750 -o root -g "$USER_NAME" "$ETC"
if [ -f "$WORK/agent.toml" ]; then
    install -m 0640 -o root -g "$USER_NAME" "$WORK/agent.toml" "$ETC/agent.toml"
elif [ ! -f "$ETC/agent.toml" ] && [ -f "$OLD_ETC/agent.toml" ]; then
    install -m 0640 -o root -g "$USER_NAME" "$OLD_ETC/agent.toml" "$ETC/agent.toml"
    echo "moved the config from $OLD_ETC/agent.toml"
    [ -n "$CA" ] || [ ! -f "$OLD_ETC/ca.pem" ] || CA="$OLD_ETC/ca.pem"
fi
if [ -n "$CA" ]; then
    install -m 0644 -o root -g root "$CA" "$ETC/ca.pem"
fi
# the paths an older server provisioned or an older install used
sed -i -e 's#^state_dir = "/var/lib/loa-agent"#state_dir = "'"$STATE"'"#' \
    -e 's#"/etc/loa-agent/ca.pem"#"'"$ETC"'/ca.pem"#' "$ETC/agent.toml"
if [ -n "$PLAYER" ]; then
    sed -i "/^\[player\]/,/^\[/ s/^kind = .*/kind = \"$PLAYER\"/" "$ETC/agent.toml"
fi
# Refuse a config the agent would refuse (the error names the bad key), or one whose state
# would land outside the writable folder the unit allows.
"$PREFIX/venv/bin/python" - "$ETC/agent.toml" "$STATE" <<'EOF'
import sys
from device_agent.config import load_config, ConfigError
try:
    config = load_config(sys.argv[1])
except ConfigError as err:
    sys.exit(f"config: {err}")
if str(config.state_dir) != sys.argv[2]:
    print(f"warning: state_dir is {config.state_dir}, not {sys.argv[2]}: the unit's "
          "ProtectSystem=strict lets the agent write only there", file=sys.stderr)
EOF
if [ -d "$OLD_ETC" ]; then
    rm -rf "$OLD_ETC"
    echo "removed the old $OLD_ETC (its config now lives in $ETC)"
fi

say "GPIO (amplifier relay and fault input, hardware/WIRING.md)"
# [amp] kind = "gpio" drives the relay through libgpiod v2's Python binding, in the agent's venv
# (Debian's python3-libgpiod is v1). Where no wheel fits, pip builds it: that needs a compiler.
GPIOD='gpiod>=2.1,<3'
if "$PREFIX/venv/bin/pip" install -q "${PIP_OPTS[@]}" "$GPIOD"; then
    :
elif [ -n "$WHEELHOUSE" ]; then  # offline: no index to build it from
    echo "(gpiod binding not in $WHEELHOUSE: an [amp] kind = \"gpio\" agent will not start)"
elif ! { apt-get install -y -q gcc python3-dev && "$PREFIX/venv/bin/pip" install -q "$GPIOD"; }
then
    echo "(gpiod binding not installed: an [amp] kind = \"gpio\" agent will not start)"
fi
# /dev/gpiochip* for the gpio group (Raspberry Pi OS has this rule; plain Debian does not).
install -d -m 0755 /etc/udev/rules.d
cat > /etc/udev/rules.d/60-loa-gpiochip.rules <<'EOF'
SUBSYSTEM=="gpio", KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"
EOF
udevadm control --reload-rules 2>/dev/null && udevadm trigger --subsystem-match=gpio 2>/dev/null \
    || true
say "clock (chrony)"
install -d -m 0755 /etc/chrony/conf.d
cat > /etc/chrony/conf.d/loaphuong.conf <<'EOF'
# LoaPhuong speaker node: a Pi has no battery-backed clock, so after a power cut its clock may be
# far off; signed commands expire and scheduled slots start on this clock. Step it whenever it
# is more than a second off, not only in the first updates.
makestep 1 -1
EOF

say "logs (journald limits)"
install -d -m 0755 /etc/systemd/journald.conf.d
cat > /etc/systemd/journald.conf.d/loaphuong.conf <<'EOF'
# LoaPhuong speaker node: a journal that survives a reboot (a technician reads why the node
# restarted) but stays small on the SD card, and a chatty failure cannot fill it.
[Journal]
Storage=persistent
Compress=yes
SystemMaxUse=64M
SystemKeepFree=512M
MaxRetentionSec=1month
RateLimitIntervalSec=30s
RateLimitBurst=2000
EOF

say "sound (ALSA mixer)"
if [ -z "$VOLUME" ]; then
    echo "mixer left as it is (upgrade; --volume sets it)"
elif ! amixer -q info >/dev/null 2>&1; then
    echo "no sound card here: mixer volume not set (run again with --volume $VOLUME once it is)"
else
    if [ -z "$MIXER" ]; then
        for control in Master PCM Digital Speaker Headphone; do
            if amixer -q sget "$control" >/dev/null 2>&1; then MIXER="$control"; break; fi
        done
    fi
    if [ -z "$MIXER" ]; then
        echo "the default card has no Master/PCM/Digital/Speaker/Headphone control: name one" \
             "with --mixer (amixer scontrols lists them)"
    else
        amixer -q sset "$MIXER" "$VOLUME" unmute 2>/dev/null || amixer -q sset "$MIXER" "$VOLUME"
        alsactl store 2>/dev/null || true   # restored at boot by alsa-restore.service
        echo "mixer $MIXER at $VOLUME"
    fi
fi

say "reboot permission (polkit)"
install -d -m 0755 /etc/polkit-1/rules.d
cat > /etc/polkit-1/rules.d/50-loa-agent.rules <<EOF
// The LoaPhuong agent may reboot the node when a signed reboot command asks it to.
polkit.addRule(function(action, subject) {
    if ((action.id == "org.freedesktop.login1.reboot" ||
         action.id == "org.freedesktop.login1.reboot-multiple-sessions") &&
        subject.user == "$USER_NAME") {
        return polkit.Result.YES;
    }
});
EOF

say "systemd unit $UNIT"
install -m 0644 "$HERE/systemd/loa-agent.service" "/etc/systemd/system/$UNIT"
if command -v systemctl >/dev/null 2>&1; then
    systemctl enable chrony >/dev/null 2>&1 || true
    systemctl enable "$UNIT" 2>&1 | grep -v '^Running in chroot' || true
else
    install -d /etc/systemd/system/multi-user.target.wants
    ln -sf "/etc/systemd/system/$UNIT" "/etc/systemd/system/multi-user.target.wants/$UNIT"
fi
if [ "$BOOTED" -eq 0 ]; then
    echo "systemd is not running here (PID 1 is $(cat /proc/1/comm 2>/dev/null || echo unknown)):" \
         "$UNIT is installed and enabled, not started; it starts at the next boot"
    echo "done: agent $("$PREFIX/venv/bin/loa-agent" --version), config $ETC/agent.toml," \
         "state $STATE"
    exit 0
fi
systemctl daemon-reload
systemctl restart systemd-journald || true
systemctl restart chrony || true
if [ "$START" -eq 0 ]; then
    echo "done (--no-start): systemctl start $UNIT when ready"
    exit 0
fi
systemctl restart "$UNIT"
# Type=notify: restart returns once the agent said READY=1 (or failed)
systemctl --no-pager --lines=15 status "$UNIT" || true
echo "done: follow it with   journalctl -u $UNIT -f"
