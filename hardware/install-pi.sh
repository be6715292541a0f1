#!/usr/bin/env bash
# Install the LoaPhuong speaker node agent on a Raspberry Pi (Raspberry Pi OS Lite, Debian 12+).
#
#   sudo hardware/install-pi.sh --config /path/to/agent.toml [--ca ca.pem] [--source DIR]
#                               [--wheel FILE] [--player mpv]
#
# --config  the agent.toml from the server's provisioning answer (POST /api/v1/nodes -> "config")
# --ca      the CA certificate from the same answer ("mqtt" -> "ca_pem"), when the broker uses
#           TLS: installed as /etc/loa-agent/ca.pem, the config's mqtt.ca_file
# --source  the LoaPhuong source tree whose agent distribution (agent/) is built and installed
#           (default: the tree this script is in)
# --wheel   install this agent wheel instead (`pip wheel --no-deps -w dist ./agent` on any
#           machine); then the Pi needs no source tree, only this script's hardware/ folder
# --player  rewrite player.kind in the installed config (default: keep it; "auto" picks
#           mpv, then ffplay, then ffmpeg+aplay)
#
# Installs: system packages, a `loa` system user (groups audio, gpio, video), a venv in
# /opt/loa-agent with the agent distribution `loaphuong-agent` and its own dependencies only
# (paho-mqtt, cryptography, jsonschema, tomli-w: none of the server's), the config in
# /etc/loa-agent, a polkit rule so the agent's `systemctl reboot` works, and the systemd unit;
# then starts the agent.
# Re-running it upgrades in place and keeps /var/lib/loa-agent (replay memory, outbox, cache);
# the version it installs replaces any over-the-air release (releases/current is cleared).
# systemd starts loa-agent-launcher, which runs the agent and applies and rolls back updates.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SOURCE="$(cd "$HERE/.." && pwd)"
CONFIG=""
CA=""
PLAYER=""
WHEEL=""
PREFIX=/opt/loa-agent
ETC=/etc/loa-agent
USER_NAME=loa

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --config) CONFIG="$2"; shift 2 ;;
        --ca) CA="$2"; shift 2 ;;
        --source) SOURCE="$(cd "$2" && pwd)"; shift 2 ;;
        --wheel) WHEEL="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"; shift 2 ;;
        --player) PLAYER="$2"; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 ;;
    esac
done

[ "$(id -u)" -eq 0 ] || { echo "run as root (sudo)" >&2; exit 1; }
if [ -n "$WHEEL" ]; then
    [ -f "$WHEEL" ] || { echo "no such wheel: $WHEEL" >&2; exit 1; }
else
    [ -f "$SOURCE/agent/pyproject.toml" ] && [ -d "$SOURCE/device_agent" ] \
        || { echo "$SOURCE is not a LoaPhuong source tree (agent/, device_agent/)" >&2; exit 1; }
fi
if [ -z "$CONFIG" ] && [ ! -f "$ETC/agent.toml" ]; then
    echo "--config is required on the first install" >&2; exit 1
fi

echo "== system packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q python3 python3-venv python3-pip ffmpeg mpv alsa-utils chrony gpiod
# ModemManager only where a 4G modem is used; telemetry reports null for signal without it.
apt-get install -y -q modemmanager || echo "(modemmanager not installed: no 4G signal readings)"

echo "== user $USER_NAME"
if ! id "$USER_NAME" >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/loa-agent --no-create-home --shell /usr/sbin/nologin \
        "$USER_NAME"
fi
getent group gpio >/dev/null || groupadd --system gpio
# video: /dev/vchiq, which `vcgencmd get_throttled` (under-voltage in telemetry) needs
getent group video >/dev/null || groupadd --system video
usermod -a -G audio,gpio,video "$USER_NAME"

echo "== virtualenv in $PREFIX"
python3 -m venv "$PREFIX/venv"
"$PREFIX/venv/bin/pip" install -q --upgrade pip
# An install made before the agent had its own distribution held the whole project.
if "$PREFIX/venv/bin/pip" show -q loaphuong >/dev/null 2>&1; then
    "$PREFIX/venv/bin/pip" uninstall -q -y loaphuong
fi
if [ -z "$WHEEL" ]; then
    # Built from a copy of agent/ and device_agent/, so the source tree stays as it was.
    BUILD="$(mktemp -d)"
    trap 'rm -rf "$BUILD"' EXIT
    cp -r "$SOURCE/agent" "$SOURCE/device_agent" "$BUILD/"
    "$PREFIX/venv/bin/pip" wheel -q --no-deps --wheel-dir "$BUILD/dist" "$BUILD/agent"
    WHEEL="$(ls "$BUILD"/dist/loaphuong_agent-*.whl)"
fi
"$PREFIX/venv/bin/pip" install -q --upgrade "$WHEEL"           # the agent and its dependencies
"$PREFIX/venv/bin/pip" install -q --no-deps --force-reinstall "$WHEEL"  # new code, same version
"$PREFIX/venv/bin/python" -c "import device_agent.agent" # fails loudly if something is missing
# The version just installed is what runs: forget the over-the-air release pointer (and an
# update half-way; the unpacked releases stay until the next update prunes them).
rm -f /var/lib/loa-agent/releases/current /var/lib/loa-agent/releases/pending.json

echo "== config in $ETC"
install -d -m 0750 -o root -g "$USER_NAME" "$ETC"
if [ -n "$CONFIG" ]; then
    install -m 0640 -o root -g "$USER_NAME" "$CONFIG" "$ETC/agent.toml"
fi
if [ -n "$CA" ]; then
    install -m 0644 -o root -g root "$CA" "$ETC/ca.pem"
fi
if [ -n "$PLAYER" ]; then
    sed -i "/^\[player\]/,/^\[/ s/^kind = .*/kind = \"$PLAYER\"/" "$ETC/agent.toml"
fi
# Refuse a config the agent would refuse (the error names the bad key).
"$PREFIX/venv/bin/python" -c "
import sys
from device_agent.config import load_config, ConfigError
try:
    load_config('$ETC/agent.toml')
except ConfigError as err:
    sys.exit(f'config: {err}')
"

echo "== GPIO (amplifier relay and fault input, hardware/WIRING.md)"
# [amp] kind = "gpio" drives the relay through libgpiod v2's Python binding, in the agent's venv
# (Debian's python3-libgpiod is v1). Where no wheel fits, pip builds it: that needs a compiler.
GPIOD='gpiod>=2.1,<3'
if ! "$PREFIX/venv/bin/pip" install -q "$GPIOD"; then
    apt-get install -y -q gcc python3-dev && "$PREFIX/venv/bin/pip" install -q "$GPIOD" \
        || echo "(gpiod binding not installed: an [amp] kind = \"gpio\" agent will not start)"
fi
# /dev/gpiochip* for the gpio group (Raspberry Pi OS has this rule; plain Debian does not).
cat > /etc/udev/rules.d/60-loa-gpiochip.rules <<'EOF'
SUBSYSTEM=="gpio", KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"
EOF
udevadm control --reload-rules 2>/dev/null && udevadm trigger --subsystem-match=gpio 2>/dev/null \
    || true

echo "== reboot permission (polkit)"
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

echo "== systemd unit"
install -m 0644 "$HERE/systemd/loa-agent.service" /etc/systemd/system/loa-agent.service
systemctl daemon-reload
systemctl enable chrony >/dev/null 2>&1 || true
systemctl enable loa-agent
systemctl restart loa-agent
sleep 2
systemctl --no-pager --lines=15 status loa-agent || true
echo "done: follow it with   journalctl -u loa-agent -f"
