#!/usr/bin/env bash
# Installs dependencies, prepares the Samba source tree for the installed
# smbd and builds everything into build/ (a meson build directory).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

./scripts/install-deps.sh
samba_tree=$(./scripts/prepare-samba-tree.sh | tail -n 1)

if [ -d build/meson-private ]; then
	meson setup --reconfigure build -Dmodule=enabled -Dsamba_tree="$samba_tree" >/dev/null
else
	meson setup build -Dmodule=enabled -Dsamba_tree="$samba_tree" >/dev/null
fi
meson compile -C build
