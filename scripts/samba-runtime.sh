#!/usr/bin/env bash
# Makes, once, a Debian root filesystem of another release with its Samba
# (smbd, smbclient, smbtorture, the VFS modules), for running the integration
# tests against that Samba on this host: the harness starts the root's smbd
# in a chroot (selftest/integration/run.py --samba-root). The root is cached
# outside the repository, keyed by suite and samba version; its path is
# printed on the last line of stdout.
#
# usage: samba-runtime.sh [--suite SUITE] [--cache-dir DIR] [--refresh] [--print-path]
#   --suite       Debian suite (default: trixie, Debian 13, Samba 4.22)
#   --cache-dir   cache root (default: /var/cache/copyoffload/samba-root)
#   --refresh     make a new root even if one is cached (picks up a newer samba)
#   --print-path  only print the cached root's path (empty if there is none)
#
# Cold: debootstrap --variant=minbase + samba, smbclient, samba-testsuite,
# samba-vfs-modules (about 1 min, ~650 MB). Warm: no network, instant.
# Every mount made here is made inside a private mount namespace (unshare
# -m), so it disappears with the namespace on every exit path.
set -euo pipefail
scripts=$(cd "$(dirname "$0")" && pwd)
. "$scripts/debian-suite.sh"

suite=trixie
cache_root=/var/cache/copyoffload/samba-root
refresh=0
print_only=0
while [ $# -gt 0 ]; do
	case "$1" in
	--suite) suite=$2; shift 2 ;;
	--cache-dir) cache_root=$2; shift 2 ;;
	--refresh) refresh=1; shift ;;
	--print-path) print_only=1; shift ;;
	-h|--help) sed -n '2,18p' "$0"; exit 0 ;;
	*) echo "samba-runtime: unknown argument '$1'" >&2; exit 2 ;;
	esac
done

packages=(samba smbclient samba-testsuite samba-vfs-modules)

# The newest prepared root of this suite: CACHE/SUITE-VERSION/.prepared
cached_root() {
	local stamp
	stamp=$(ls -d "$cache_root/$suite"-*/.prepared 2>/dev/null | sort -V | tail -n 1)
	[ -n "$stamp" ] && dirname "$stamp"
	return 0
}

if [ $print_only -eq 1 ]; then
	cached_root
	exit 0
fi
if [ $refresh -eq 0 ]; then
	root=$(cached_root)
	if [ -n "$root" ]; then
		echo "samba-runtime: cached $suite root with samba $(cat "$root/.prepared")" >&2
		echo "$root"
		exit 0
	fi
fi

command -v debootstrap >/dev/null || {
	echo "samba-runtime: debootstrap missing (run scripts/install-deps.sh)" >&2
	exit 1
}

partial=$cache_root/$suite.partial
mkdir -p "$cache_root"
# One root per suite at a time; a second caller waits, then finds it.
exec 9>"$cache_root/.lock-$suite"
flock 9
if [ $refresh -eq 0 ] && root=$(cached_root) && [ -n "$root" ]; then
	echo "$root"
	exit 0
fi
# Nothing may be mounted there (mounts only ever live in private namespaces).
if findmnt -rn -o TARGET | grep -q "^$partial/"; then
	echo "samba-runtime: something is mounted below $partial; refusing to remove it" >&2
	exit 1
fi
rm -rf "$partial"

started=$SECONDS
echo "samba-runtime: debootstrap $suite from $(debian_mirror) into $partial" >&2
# debootstrap mounts /proc and /sys in the target itself: keep those mounts
# in a namespace of their own. It takes about 2 minutes; the limit keeps a
# stalled mirror from using up a CI run.
timeout 1200 unshare -m --propagation private \
	debootstrap --variant=minbase "$suite" "$partial" "$(debian_mirror)" >"$cache_root/$suite.debootstrap.log" 2>&1 || {
	tail -n 20 "$cache_root/$suite.debootstrap.log" >&2
	echo "samba-runtime: debootstrap failed (log: $cache_root/$suite.debootstrap.log)" >&2
	exit 1
}

# No daemon may start while packages install inside the root.
printf '#!/bin/sh\nexit 101\n' >"$partial/usr/sbin/policy-rc.d"
chmod 755 "$partial/usr/sbin/policy-rc.d"
rm -f "$partial/etc/apt/sources.list"
write_suite_sources deb "$suite" "$partial/etc/apt/sources.list.d/debian.sources"
cp -L /etc/resolv.conf "$partial/etc/resolv.conf"

echo "samba-runtime: installing ${packages[*]} in the root" >&2
install_cmd="apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q"
install_cmd+=" --no-install-recommends ${packages[*]} && apt-get clean"
unshare -m --propagation private sh -c '
	root=$1; shift
	mount -t proc proc "$root/proc" &&
	mount --rbind /dev "$root/dev" &&
	exec chroot "$root" sh -c "$1"' sh "$partial" "$install_cmd" \
	>"$cache_root/$suite.install.log" 2>&1 || {
	tail -n 20 "$cache_root/$suite.install.log" >&2
	echo "samba-runtime: installing samba in the root failed (log: $cache_root/$suite.install.log)" >&2
	exit 1
}

version=$(dpkg-query --admindir="$partial/var/lib/dpkg" -W -f='${Version}' samba)
root=$cache_root/$suite-${version#*:}
rm -rf "$root"
echo "$version" >"$partial/.prepared"
mv "$partial" "$root"
rm -f "$cache_root/$suite.debootstrap.log" "$cache_root/$suite.install.log"
echo "samba-runtime: $suite root with samba $version ready in $((SECONDS - started)) s" >&2
echo "$root"
