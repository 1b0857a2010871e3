#!/bin/sh
# PID 1 of the Linux SMB client guest (linux_guest.py builds the initramfs
# around it): loads the modules (cifs, virtio-net), brings up QEMU's user
# network (the host's 127.0.0.1 is 10.0.2.2 there) and then runs the host's
# commands, one per console line:
#
#   host:  <id> <shell command>
#   guest: OUT <id> <a line of its output>   (stdout and stderr)
#          DONE <id> <exit status>
#
# "guest: ready" says it reads; "guest: setup failed: ..." that it will not.
/bin/busybox --install -s /bin
# The host's cp before busybox's.
export PATH=/usr/bin:/usr/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run

setup_failed() {
	echo "guest: setup failed: $*"
	poweroff -f; sleep 60
}

while read -r module; do
	insmod "/lib/modules/$module" || setup_failed "insmod $module"
done < /lib/modules/modules.order

for i in $(seq 100); do
	[ -e /sys/class/net/eth0 ] && break
	sleep 0.1
done
ip link set lo up &&
	ip link set eth0 up &&
	ip addr add 10.0.2.15/24 dev eth0 &&
	ip route add default via 10.0.2.2 || setup_failed "network: $(ip link 2>&1)"

# The console is the command channel: no echo of what the host sends.
stty -echo
echo "guest: ready (kernel $(uname -r))"
while IFS= read -r line; do
	id=${line%% *}
	sh -c "${line#* }" > /tmp/output 2>&1 < /dev/null
	status=$?
	sed "s/^/OUT $id /" /tmp/output
	echo "DONE $id $status"
done
poweroff -f; sleep 60
