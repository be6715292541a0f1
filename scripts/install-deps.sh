#!/usr/bin/env bash
# Installs the system packages LoaPhuong needs when they are missing (Debian/Ubuntu):
# ffmpeg, espeak-ng, mosquitto, the DejaVu fonts (the reports' PDF embeds them for Vietnamese
# diacritics), and python3-venv when venv cannot bootstrap pip; with WITH_CHROMIUM=1 also what
# the end-to-end tests use (chromium, faketime), with WITH_POSTGRES=1 PostgreSQL's server
# (scripts/ci-postgres.sh starts one for `make test-postgres` from it).
# Uses sudo only when not root. Does nothing when everything is there.
set -euo pipefail
need=()
command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || need+=(ffmpeg)
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] \
  && [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf ] || need+=(fonts-dejavu-core)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
if [ "${WITH_CHROMIUM:-0}" = 1 ]; then
  command -v chromium >/dev/null || need+=(chromium)
  # libfaketime: tests/e2e/test_faults_node.py jumps a running agent's clock with it
  command -v faketime >/dev/null || need+=(faketime)
fi
if [ "${WITH_POSTGRES:-0}" = 1 ]; then
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
fi
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if ! command -v apt-get >/dev/null; then
  echo "install these with your package manager: ${need[*]}" >&2
  exit 1
fi
echo "installing system packages: ${need[*]}"
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need[@]}"
