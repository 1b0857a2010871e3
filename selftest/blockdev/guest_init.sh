#!/bin/sh
# PID 1 of the blockdev test guest (selftest/blockdev/run.py builds the
# initramfs around it). Loads the modules, makes two LIO tcm_loop SCSI disks
# on RAM disks, formats and mounts one NVMe namespace, starts copyoffloadd
# with --device-copy and runs the test program. Every line the host parses
# starts with "PASS ", "FAIL " or "blockdev guest:". Powers off at the end.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp /run /mnt
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
echo "blockdev guest: kernel $(uname -r)"

setup_failed() {
	echo "FAIL guest setup: $*"
	echo "blockdev guest: done"
	poweroff -f; sleep 60
}

while read -r module; do
	insmod "/lib/modules/$module" || setup_failed "insmod $module"
done < /lib/modules/modules.order

# LIO: two 64 MiB RAM disks with unit serials (XCOPY finds logical units by
# the NAA designator LIO derives from them), exported through one tcm_loop
# target as LUN 0 (sda) and LUN 1 (sdb).
mount -t configfs configfs /sys/kernel/config || setup_failed "mount configfs"
target=/sys/kernel/config/target
naa=naa.5001405c0ff10ad0
tpg=$target/loopback/$naa/tpgt_1
for i in 0 1; do
	disk=$target/core/rd_mcp_0/disk$i
	mkdir -p "$disk" &&
		echo "rd_pages=16384" > "$disk/control" &&
		echo 1 > "$disk/enable" &&
		echo "copyoffload-sd$i" > "$disk/wwn/vpd_unit_serial" ||
		setup_failed "LIO RAM disk $i"
done
mkdir -p "$tpg" && echo "naa.5001405c0ff10ad1" > "$tpg/nexus" || setup_failed "tcm_loop nexus"
for i in 0 1; do
	mkdir -p "$tpg/lun/lun_$i" &&
		ln -s "$target/core/rd_mcp_0/disk$i" "$tpg/lun/lun_$i/disk$i" ||
		setup_failed "tcm_loop LUN $i"
done

for i in $(seq 100); do
	[ -b /dev/nvme0n4 ] && [ -b /dev/sdb ] && [ -b /dev/nvme0n3p2 ] && break
	sleep 0.1
done
for device in /dev/nvme0n1 /dev/nvme0n2 /dev/nvme0n3p1 /dev/nvme0n3p2 /dev/nvme0n4 \
	      /dev/sda /dev/sdb; do
	[ -b "$device" ] || setup_failed "no $device"
done

# A mounted device: device copy must refuse it.
mke2fs -q /dev/nvme0n4 > /dev/null && mount -t ext2 /dev/nvme0n4 /mnt ||
	setup_failed "mount /dev/nvme0n4"

/bin/copyoffloadd --socket /run/copyoffloadd.sock --device-copy --workers 2 \
	--log-level debug 2> /tmp/copyoffloadd.log &
helper=$!
for i in $(seq 100); do
	[ -S /run/copyoffloadd.sock ] && break
	sleep 0.1
done
[ -S /run/copyoffloadd.sock ] || setup_failed "copyoffloadd did not start: $(cat /tmp/copyoffloadd.log)"

/bin/blockdev-test /run/copyoffloadd.sock /bin/copyoffload
status=$?
kill "$helper"
wait "$helper"
helper_status=$?
# The helper's log, for the console log (the host shows it on failure).
# The host checks both statuses: a crash ends the cases early.
echo "blockdev guest: copyoffloadd log follows (test status $status, copyoffloadd status $helper_status)"
sed 's/^/blockdev guest: | /' /tmp/copyoffloadd.log
echo "blockdev guest: done"
poweroff -f; sleep 60
