#!/bin/sh
# Installs vswitch with its man pages and shell completions (bash, zsh, fish):
#   configs/install.sh                  # into /usr/local, building the release binary first
#   PREFIX=/usr DESTDIR=/tmp/stage configs/install.sh   # staged, as a package build does
#   BIN=path/to/vswitch configs/install.sh              # an already built binary
set -eu
cd "$(dirname "$0")/.."
if [ -z "${BIN:-}" ]; then
    cargo build --release --bin vswitch
    BIN=target/release/vswitch
fi
root="${DESTDIR:-}${PREFIX:-/usr/local}"
install -D -m 0755 "$BIN" "$root/bin/vswitch"
"$BIN" man "$root/share/man/man1"
install -d "$root/share/bash-completion/completions" "$root/share/zsh/site-functions" \
    "$root/share/fish/vendor_completions.d"
"$BIN" completions bash > "$root/share/bash-completion/completions/vswitch"
"$BIN" completions zsh > "$root/share/zsh/site-functions/_vswitch"
"$BIN" completions fish > "$root/share/fish/vendor_completions.d/vswitch.fish"
echo "installed $root/bin/vswitch, man pages in $root/share/man/man1, completions for bash, zsh and fish"
