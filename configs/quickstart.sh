#!/usr/bin/env bash
# The quickstart, on a fresh Debian or Ubuntu machine with only Rust, as root: installs ip and
# ping if missing, builds vswitch, and runs configs/quickstart.toml (three containers on one
# network ping each other by name). Ctrl-C tears everything down; `--once` ends by itself when
# the pings are done, exiting non-zero if one failed.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v ping >/dev/null || missing+=(iputils-ping)
if ((${#missing[@]})); then
  echo "quickstart: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

exec cargo run --release --bin vswitch -- up configs/quickstart.toml "$@"
