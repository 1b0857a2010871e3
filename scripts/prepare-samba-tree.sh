#!/usr/bin/env bash
# Prepares a configured Samba source tree matching an smbd, for building the
# copyoffload VFS module out of tree (Debian's samba-dev lacks vfs.h and
# includes.h). Only configure + header-generating waf targets run: no full
# Samba build. The tree is cached outside the repository, keyed by the
# samba package version, and its path is printed on the last line of stdout.
#
# usage: prepare-samba-tree.sh [--version DEBIAN_VERSION] [--cache-dir DIR] [--print-path]
#   --version     samba package version (default: the installed samba)
#   --cache-dir   cache root (default: /var/cache/copyoffload/samba-tree)
#   --print-path  only print where the tree for that version is (or would be)
set -euo pipefail

cache_root=/var/cache/copyoffload/samba-tree
version=
print_only=0
while [ $# -gt 0 ]; do
	case "$1" in
	--version) version=$2; shift 2 ;;
	--cache-dir) cache_root=$2; shift 2 ;;
	--print-path) print_only=1; shift ;;
	-h|--help) sed -n '2,13p' "$0"; exit 0 ;;
	*) echo "prepare-samba-tree: unknown argument '$1'" >&2; exit 2 ;;
	esac
done

if [ -z "$version" ]; then
	version=$(dpkg-query -W -f='${Version}' samba 2>/dev/null) || {
		echo "prepare-samba-tree: samba is not installed; pass --version" >&2
		exit 1
	}
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

if [ -f "$stamp" ]; then
	tree=$(find_tree)
	echo "prepare-samba-tree: cached tree for samba $version" >&2
	echo "$tree"
	exit 0
fi

# Header targets the module (and modules like vfs_btrfs/vfs_default) include.
waf_targets=ntstatus_generated,werror_generated,param_local.h,param_global.h
waf_targets+=,param_functions.h,s3_param_proto_h,PIDL_SERVER_ID,PIDL_MISC
waf_targets+=,PIDL_FILE_ID,PIDL_SMB2_LEASE_STRUCT,PIDL_SECURITY,PIDL_SMB_ACL
waf_targets+=,PIDL_SMBXSRV,PIDL_AUTH,PIDL_LSA,PIDL_KRB5PAC,PIDL_NETLOGON,PIDL_SAMR
waf_targets+=,PIDL_IOCTL,PIDL_MESSAGING,PIDL_XATTR,PIDL_DFSBLOBS

rm -rf "$dir"
mkdir -p "$dir"
cd "$dir"
echo "prepare-samba-tree: fetching samba $version source into $dir" >&2
apt-get source -q "samba=$version" >&2
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
	--targets="$waf_targets" >waf.log.copyoffload 2>&1 || {
	tail -n 30 waf.log.copyoffload >&2
	exit 1
}
touch "$stamp"
echo "$tree"
