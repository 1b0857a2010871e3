#!/usr/bin/env bash
# Installs every Debian package copyoffload needs to build, test and demo.
# Idempotent: a second run only checks. Runs as root on Debian 12.
set -euo pipefail

packages=(
	# runtime under test
	samba smbclient samba-testsuite samba-vfs-modules
	# building the module against a configured Samba source tree
	dpkg-dev gcc g++ libc6-dev xz-utils python3 python3-distutils pkg-config perl
	flex bison libparse-yapp-perl libjson-perl libgnutls28-dev zlib1g-dev libbsd-dev
	libkeyutils-dev libtalloc-dev libtevent-dev libtdb-dev
	# the project itself
	meson ninja-build liburing-dev libcmocka-dev libfmt-dev libsystemd-dev
	# tests
	xfsprogs btrfs-progs util-linux e2fsprogs python3-impacket
	# a FUSE filesystem whose daemon a test stops, to hang it (test_hung_filesystem.py)
	bindfs fuse3
	# systemd-analyze and systemd-socket-activate for the service tests (the
	# machine need not boot with systemd)
	systemd
	# the Samba 4.22 (Debian 13) test runtime (scripts/samba-runtime.sh)
	debootstrap
	# the ASan/UBSan build and libFuzzer targets (scripts/sanitize-build.sh);
	# llvm for llvm-symbolizer in sanitizer reports
	clang libclang-rt-14-dev llvm
	# the QEMU guests: the block-device test (selftest/blockdev, emulated
	# NVMe) and the Linux SMB client test (test_linux_client.py, cifs.ko,
	# QEMU's user network), a static busybox for their initramfs, ldd
	# (libc-bin) for the libraries of the programs they carry (the helper;
	# coreutils' cp, xfsprogs' xfs_io); the guest kernel is fetched and
	# cached by the tests themselves (apt-get download linux-image-*), the
	# LIO SCSI target is set up through configfs directly
	qemu-system-x86 busybox-static libc-bin coreutils
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done

# apt-get source needs deb-src entries (deb822 sources: "Types: deb" -> "Types: deb deb-src").
need_src=0
src_list=/etc/apt/sources.list.d/debian.sources
if [ -f "$src_list" ] && grep -q '^Types: deb$' "$src_list"; then
	sed -i 's/^Types: deb$/Types: deb deb-src/' "$src_list"
	need_src=1
fi

if [ ${#missing[@]} -eq 0 ] && [ $need_src -eq 0 ]; then
	echo "install-deps: all ${#packages[@]} packages present"
	exit 0
fi

# Installing samba must not start Debian's own smbd/nmbd on every interface.
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
	created_policy=1
fi
trap '[ $created_policy -eq 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
if [ ${#missing[@]} -gt 0 ]; then
	echo "install-deps: installing ${missing[*]}"
	apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# Debian 13's archive keys (the Samba 4.22 stage's debootstrap) came with a
# point release of Debian 12's debian-archive-keyring: upgrade an older one.
if [ ! -e /usr/share/keyrings/debian-archive-trixie-automatic.gpg ]; then
	echo "install-deps: upgrading debian-archive-keyring for Debian 13's keys"
	apt-get install -y -q --no-install-recommends debian-archive-keyring
fi
