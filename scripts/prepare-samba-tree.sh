#!/usr/bin/env bash
# Prepares a configured Samba source tree matching an smbd, for building the
# copyoffload VFS module out of tree (Debian's samba-dev lacks vfs.h and
# includes.h). Only configure + header-generating waf targets run: no full
# Samba build. The tree is cached outside the repository, keyed by the
# samba package version, and its path is printed on the last line of stdout.
#
# usage: prepare-samba-tree.sh [--version V] [--suite SUITE] [--root DIR]
#                              [--cache-dir DIR] [--print-path]
#   (none)        the samba installed on this host
#   --root DIR    the samba installed in the Debian root DIR (e.g. made by
#                 samba-runtime.sh), from that root's suite
#   --suite SUITE the samba of Debian suite SUITE (e.g. trixie), newest
#                 version unless --version is given
#   --version V   this samba package version (e.g. 2:4.22.11+dfsg-0+deb13u1)
#   --cache-dir   cache root (default: /var/cache/copyoffload/samba-tree)
#   --print-path  only print where the tree for that version is (or would be)
#
# Sources of a suite other than the host's come from a deb-src-only entry,
# /etc/apt/sources.list.d/copyoffload-SUITE-src.sources: apt can never
# install that suite's binary packages through it. A cached tree needs no
# network.
set -euo pipefail
scripts=$(cd "$(dirname "$0")" && pwd)
. "$scripts/debian-suite.sh"

cache_root=/var/cache/copyoffload/samba-tree
version=
suite=
root=
print_only=0
while [ $# -gt 0 ]; do
	case "$1" in
	--version) version=$2; shift 2 ;;
	--suite) suite=$2; shift 2 ;;
	--root) root=$2; shift 2 ;;
	--cache-dir) cache_root=$2; shift 2 ;;
	--print-path) print_only=1; shift ;;
	-h|--help) sed -n '2,22p' "$0"; exit 0 ;;
	*) echo "prepare-samba-tree: unknown argument '$1'" >&2; exit 2 ;;
	esac
done

if [ -n "$root" ]; then
	version=$(dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Version}' samba 2>/dev/null) || {
		echo "prepare-samba-tree: samba is not installed in $root" >&2
		exit 1
	}
	suite=$(. "$root/etc/os-release" && echo "${VERSION_CODENAME:-}")
	[ -n "$suite" ] || { echo "prepare-samba-tree: $root/etc/os-release names no suite" >&2; exit 1; }
elif [ -z "$version" ] && [ -z "$suite" ]; then
	version=$(dpkg-query -W -f='${Version}' samba 2>/dev/null) || {
		echo "prepare-samba-tree: samba is not installed; pass --version, --suite or --root" >&2
		exit 1
	}
fi
[ -n "$suite" ] || suite=$(host_codename)

# Makes SUITE's source index available when SUITE is not the host's own.
src_list=/etc/apt/sources.list.d/copyoffload-$suite-src.sources
ensure_source_index() {
	[ "$suite" != "$(host_codename)" ] || return 0
	if [ ! -f "$src_list" ]; then
		echo "prepare-samba-tree: adding deb-src entries for $suite ($src_list)" >&2
		write_suite_sources deb-src "$suite" "$src_list"
	fi
	# Refresh only this file's index; leave every other list as it is.
	apt-get update -q -o Dir::Etc::SourceList="$src_list" -o Dir::Etc::SourceParts=- \
		-o APT::Get::List-Cleanup=0 >&2
}

if [ -z "$version" ]; then
	# --suite alone: the version the suite has now (needs its index).
	ensure_source_index
	version=$(apt-get source -q --print-uris "samba/$suite" 2>/dev/null |
		sed -n "s/.* samba_\(.*\)\.dsc .*/\1/p" | head -n 1)
	# The .dsc name lacks the epoch: take the full version from the index.
	version=$(apt-cache showsrc samba | sed -n 's/^Version: //p' |
		grep -x -e "$version" -e "[0-9]*:$version" | head -n 1)
	[ -n "$version" ] || { echo "prepare-samba-tree: no samba source in $suite" >&2; exit 1; }
fi

# "2:4.17.12+dfsg-0+deb12u4" -> cache dir "4.17.12+dfsg-0+deb12u4"
key=${version#*:}
dir=$cache_root/$key
stamp=$dir/.prepared

find_tree() {
	find "$dir" -mindepth 1 -maxdepth 1 -type d -name 'samba-*' | head -n 1
}

if [ $print_only -eq 1 ]; then
	if [ -f "$stamp" ]; then find_tree; else echo "$dir/samba-<not prepared>"; fi
	exit 0
fi

cached_tree() {
	[ -f "$stamp" ] || return 1
	echo "prepare-samba-tree: cached tree for samba $version" >&2
	find_tree
}
cached_tree && exit 0
# One preparation per version at a time; a second caller waits, then finds it.
mkdir -p "$cache_root"
exec 9>"$cache_root/.lock-$key"
flock 9
cached_tree && exit 0

# Header targets the module (and modules like vfs_btrfs/vfs_default) include.
# hresult.h and the IDLs after PIDL_DFSBLOBS are included only by newer
# releases (4.22: hresult_generated, PIDL_SMB3POSIX); a target is asked for
# only where the tree has it.
waf_header_targets() {
	local targets=ntstatus_generated,werror_generated,param_local.h,param_global.h
	targets+=,param_functions.h,s3_param_proto_h
	grep -rqs --include=wscript_build "'hresult_generated'" libcli && targets+=,hresult_generated
	local idl
	for idl in SERVER_ID MISC FILE_ID SMB2_LEASE_STRUCT SECURITY SMB_ACL SMBXSRV AUTH LSA \
		KRB5PAC NETLOGON SAMR IOCTL MESSAGING XATTR DFSBLOBS NBT SMB3POSIX; do
		[ -n "$(find librpc/idl source3/librpc/idl -maxdepth 1 -iname "$idl.idl")" ] && targets+=,PIDL_$idl
	done
	echo "$targets"
}

started=$SECONDS
if ! apt-cache showsrc samba 2>/dev/null | grep -x "Version: $version" >/dev/null; then
	ensure_source_index
fi
rm -rf "$dir"
mkdir -p "$dir"
cd "$dir"
echo "prepare-samba-tree: fetching samba $version source ($suite) into $dir" >&2
apt-get source -q "samba=$version" >&2 || {
	echo "prepare-samba-tree: samba $version is not in $suite's sources (a root older than" \
		"the archive? make a new one: samba-runtime.sh --refresh)" >&2
	exit 1
}
tree=$(find_tree)
[ -n "$tree" ] || { echo "prepare-samba-tree: apt-get source left no samba-* dir" >&2; exit 1; }

cd "$tree"
echo "prepare-samba-tree: configuring (about a minute)" >&2
PYTHON=python3 ./configure --without-ad-dc --disable-python --without-json \
	--without-ldap --without-ads --without-pam --without-acl-support \
	--without-libarchive --without-systemd --disable-cups --disable-iprint \
	--disable-avahi --without-ldb-lmdb --with-shared-modules='!vfs_snapper' \
	--with-profiling-data >config.log.copyoffload 2>&1 || {
	tail -n 30 config.log.copyoffload >&2
	exit 1
}
echo "prepare-samba-tree: generating headers" >&2
PYTHONHASHSEED=1 python3 buildtools/bin/waf build -j"$(nproc)" \
	--targets="$(waf_header_targets)" >waf.log.copyoffload 2>&1 || {
	tail -n 30 waf.log.copyoffload >&2
	exit 1
}
touch "$stamp"
echo "prepare-samba-tree: samba $version tree ready in $((SECONDS - started)) s" >&2
echo "$tree"
