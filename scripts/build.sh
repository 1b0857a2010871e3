#!/usr/bin/env bash
# Installs dependencies, prepares the Samba source tree for the target smbd
# and builds.
#
# usage: build.sh                     everything, for the host's smbd, into build/
#        build.sh --samba-root ROOT   the VFS module only, for the smbd installed
#                                     in the Debian root ROOT (scripts/samba-runtime.sh),
#                                     into build-CODENAME/ (e.g. build-trixie); prints
#                                     the module's path on the last line
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

root=
while [ $# -gt 0 ]; do
	case "$1" in
	--samba-root) root=$(cd "$2" && pwd); shift 2 ;;
	-h|--help) sed -n '2,9p' "$0"; exit 0 ;;
	*) echo "build.sh: unknown argument '$1'" >&2; exit 2 ;;
	esac
done

# meson setup, or --reconfigure an existing build directory.
setup() { # DIR OPTIONS...
	local dir=$1; shift
	if [ -d "$dir/meson-private" ]; then
		meson setup --reconfigure "$dir" "$@" >/dev/null
	else
		meson setup "$dir" "$@" >/dev/null
	fi
}

./scripts/install-deps.sh

if [ -z "$root" ]; then
	samba_tree=$(./scripts/prepare-samba-tree.sh | tail -n 1)
	setup build -Dmodule=enabled -Dsamba_tree="$samba_tree"
	meson compile -C build
	exit 0
fi

samba_tree=$(./scripts/prepare-samba-tree.sh --root "$root" | tail -n 1)
codename=$(. "$root/etc/os-release" && echo "$VERSION_CODENAME")
dir=build-$codename
setup "$dir" -Dmodule=enabled -Dsamba_tree="$samba_tree" -Dsamba_sysroot="$root"
# Only the module: the helper and the tests are host programs, built in build/.
meson compile -C "$dir" vfs_copyoffload/copyoffload:shared_module >&2
echo "$repo/$dir/vfs_copyoffload/copyoffload.so"
