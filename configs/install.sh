#!/bin/sh
# Installs vswitch and its CNI plugin with man pages, shell completions (bash, zsh, fish) and
# systemd units (vswitch.service, vswitch.socket):
#   configs/install.sh                  # into /usr/local, building the release binary first
#   PREFIX=/usr DESTDIR=/tmp/stage configs/install.sh   # staged, as a package build does
#   BIN=path/to/vswitch configs/install.sh              # an already built binary
set -eu
cd "$(dirname "$0")/.."
if [ -z "${BIN:-}" ]; then
    cargo build --release --bin vswitch --bin vswitch-cni
    BIN=target/release/vswitch
fi
prefix="${PREFIX:-/usr/local}"
root="${DESTDIR:-}$prefix"
install -D -m 0755 "$BIN" "$root/bin/vswitch"
# The CNI plugin beside the binary, where Podman and other CNI runtimes look for plugins.
cni="$(dirname "$BIN")/vswitch-cni"
if [ -x "$cni" ]; then
    install -D -m 0755 "$cni" "$root/lib/cni/vswitch-cni"
fi
install -d "$root/lib/systemd/system"
sed "s|@BINDIR@|$prefix/bin|" configs/vswitch.service > "$root/lib/systemd/system/vswitch.service"
install -m 0644 configs/vswitch.socket "$root/lib/systemd/system/vswitch.socket"
"$BIN" man "$root/share/man/man1"
install -d "$root/share/bash-completion/completions" "$root/share/zsh/site-functions" \
    "$root/share/fish/vendor_completions.d"
"$BIN" completions bash > "$root/share/bash-completion/completions/vswitch"
"$BIN" completions zsh > "$root/share/zsh/site-functions/_vswitch"
"$BIN" completions fish > "$root/share/fish/vendor_completions.d/vswitch.fish"
echo "installed $root/bin/vswitch, $root/lib/cni/vswitch-cni, systemd units in $root/lib/systemd/system, man pages in $root/share/man/man1, completions for bash, zsh and fish"
