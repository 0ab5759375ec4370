#!/bin/sh
# Builds OUT/initrd-net.img: a busybox initramfs for the test kernel
# (scripts/lib/make-guest.sh) with virtio-net. It takes a DHCP lease on
# eth0, sends "GET /" to the HTTP server named on the kernel command line
# (netguest.server=IP:PORT; busybox nc, as the static busybox's wget cannot
# look up services without NSS) and prints the body's last line on ttyS0:
#   NET-LEASE IP via ROUTER        NET-RESULT BODY|fail
# Usage: scripts/e2e/make-net-guest.sh OUT
set -eu
out=$1
kver=$(ls /lib/modules | sort -V | tail -1)
mkdir -p "$out"
if [ -s "$out/initrd-net.img" ] && [ "$out/initrd-net.img" -nt "$0" ]; then exit 0; fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/dev" "$root/proc" "$root/sys" "$root/tmp" "$root/lib/modules"
cp /bin/busybox "$root/bin/busybox"
for a in sh mount insmod sleep ip udhcpc nc printf tail cat echo tr; do ln -s busybox "$root/bin/$a"; done
: > "$root/modules.order"
for m in $( (modprobe -S "$kver" --show-depends virtio_pci; modprobe -S "$kver" --show-depends virtio_net) 2>/dev/null | awk '$1=="insmod"{print $2}'); do
    b=$(basename "$m"); b=${b%.xz}; b=${b%.zst}
    grep -qx "$b" "$root/modules.order" && continue
    case "$m" in
        *.xz) xz -dc "$m" > "$root/lib/modules/$b" ;;
        *.zst) zstd -qdc "$m" > "$root/lib/modules/$b" ;;
        *) cp "$m" "$root/lib/modules/$b" ;;
    esac
    echo "$b" >> "$root/modules.order"
done
cat > "$root/bin/dhcp.sh" <<'DHCP'
#!/bin/sh
case "$1" in
    bound|renew)
        ip addr add "$ip/${mask:-24}" dev "$interface"
        [ -n "${router:-}" ] && ip route add default via "${router%% *}"
        echo "NET-LEASE $ip via ${router:-none}" > /dev/ttyS0 ;;
esac
exit 0
DHCP
cat > "$root/init" <<'INIT'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules.order); do insmod /lib/modules/$m 2>/dev/null; done
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -n -q -t 20 -T 1 -s /bin/dhcp.sh >/dev/null 2>&1 || echo "NET-LEASE fail" > /dev/ttyS0
server=""
for w in $(cat /proc/cmdline); do case "$w" in netguest.server=*) server=${w#netguest.server=} ;; esac; done
r=""
for t in 1 2 3 4 5; do
    r=$(printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 5 "${server%:*}" "${server##*:}" 2>/dev/null | tail -n 1)
    case "$r" in HTTP/*|"") r="" ;; *) break ;; esac
    sleep 1
done
echo "NET-RESULT ${r:-fail}" > /dev/ttyS0
while true; do sleep 60; done
INIT
chmod +x "$root/init" "$root/bin/dhcp.sh"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -9) > "$out/initrd-net.img.tmp"
mv "$out/initrd-net.img.tmp" "$out/initrd-net.img"
