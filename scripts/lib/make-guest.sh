#!/bin/sh
# Builds the tiny demo/test guest from Debian packages: the host's Debian
# kernel and an initramfs of busybox-static plus the bochs display driver.
# The guest prints CLOUDBIOS-GUEST-READY on its serial console, paints its
# screen a known colour (#1E90FF, "dodger blue") and echoes every line typed
# on its keyboard to the serial console as "typed: LINE".
# With "cbguest.resolve=NAME" on its command line it also brings its virtio
# NIC up by DHCP (busybox udhcpc), asks the DNS server the DHCP lease named
# for NAME and prints "CLOUDBIOS-GUEST-RESOLVED NAME ADDRESS" (or
# "CLOUDBIOS-GUEST-RESOLVE-FAILED NAME: WHY") on its serial console.
# Boot it with "vga=0x344" on the kernel command line (VESA 1024x768x32, the
# kernel's vesafb): writes to its /dev/fb0 reach the screen directly. Without
# it the guest falls back to the bochs DRM driver, whose fbdev emulation (a
# shadow buffer) does not always show what is written to /dev/fb0.
# Usage: scripts/lib/make-guest.sh OUTDIR   -> OUTDIR/vmlinuz OUTDIR/initrd.img
set -eu
out=$1
kver=$(ls /lib/modules | sort -V | tail -1)
kernel=/boot/vmlinuz-$kver
[ -r "$kernel" ] || { echo "make-guest: no kernel at $kernel (install linux-image-amd64)" >&2; exit 1; }
mkdir -p "$out"
if [ -s "$out/initrd.img" ] && [ "$out/initrd.img" -nt "$0" ] && [ "$out/vmlinuz" -nt "$kernel" ]; then exit 0; fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/tmp" "$root/dev" "$root/proc" "$root/sys" "$root/lib/modules/$kver"
cp /bin/busybox "$root/bin/busybox"
for a in sh mount modprobe insmod cat echo dd sleep poweroff reboot seq head tr mv rm cp dmesg \
         ip udhcpc nslookup grep sed awk; do ln -s busybox "$root/bin/$a"; done
# bochs DRM (with fbdev emulation) and its dependencies
mods=$(modprobe -S "$kver" --show-depends bochs 2>/dev/null | awk '$1=="insmod"{print $2}')
for m in $mods; do
    rel=${m#/lib/modules/$kver/}
    mkdir -p "$root/lib/modules/$kver/$(dirname "$rel")"
    case "$m" in
        *.xz) xz -dc "$m" > "$root/lib/modules/$kver/${rel%.xz}" ;;
        *.zst) zstd -qdc "$m" > "$root/lib/modules/$kver/${rel%.zst}" ;;
        *) cp "$m" "$root/lib/modules/$kver/$rel" ;;
    esac
done
printf '%s\n' $mods | sed "s|/lib/modules/$kver/||; s/\.xz$//; s/\.zst$//" > "$root/modules.order"
# virtio-net (and virtio-pci under it) for cbguest.resolve=
netmods=$( (modprobe -S "$kver" --show-depends virtio_pci; modprobe -S "$kver" --show-depends virtio_net) 2>/dev/null \
    | awk '$1=="insmod" && !seen[$2]++ {print $2}')
for m in $netmods; do
    rel=${m#/lib/modules/$kver/}
    mkdir -p "$root/lib/modules/$kver/$(dirname "$rel")"
    case "$m" in
        *.xz) xz -dc "$m" > "$root/lib/modules/$kver/${rel%.xz}" ;;
        *.zst) zstd -qdc "$m" > "$root/lib/modules/$kver/${rel%.zst}" ;;
        *) cp "$m" "$root/lib/modules/$kver/$rel" ;;
    esac
done
printf '%s\n' $netmods | sed "s|/lib/modules/$kver/||; s/\.xz$//; s/\.zst$//" > "$root/net.order"
mkdir -p "$root/etc"
cat > "$root/udhcpc.script" <<'DHCP'
#!/bin/sh
# busybox udhcpc's hook: address, route and the lease's DNS server
case "$1" in
    bound|renew)
        ip addr flush dev "$interface"
        ip addr add "$ip/${mask:-24}" dev "$interface"
        [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
        : > /etc/resolv.conf
        for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
        ;;
esac
exit 0
DHCP
chmod +x "$root/udhcpc.script"
cat > "$root/init" <<'INIT'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# keep kernel messages off the screen
dmesg -n 1 2>/dev/null
# vesafb (vga=) is there from boot; otherwise load the bochs DRM driver
if [ ! -e /dev/fb0 ]; then
    for m in $(cat /modules.order); do insmod /lib/modules/*/$m 2>/dev/null; done
    i=0
    while [ ! -e /dev/fb0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
    # the text console takes the new framebuffer over and redraws it
    sleep 1
fi
echo "CLOUDBIOS-GUEST-READY" > /dev/ttyS0
# cbguest.resolve=NAME: DHCP on the NIC, then NAME through the lease's DNS server
for arg in $(cat /proc/cmdline); do
    case "$arg" in cbguest.resolve=*) resolve=${arg#cbguest.resolve=} ;; esac
done
if [ -n "${resolve:-}" ]; then
    (
        for m in $(cat /net.order); do insmod /lib/modules/*/$m 2>/dev/null; done
        i=0
        while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
        ip link set lo up
        ip link set eth0 up
        if ! udhcpc -i eth0 -n -q -t 20 -T 3 -s /udhcpc.script >/dev/null 2>&1; then
            echo "CLOUDBIOS-GUEST-RESOLVE-FAILED $resolve: no DHCP lease" > /dev/ttyS0
        else
            server=$(awk '/^nameserver/ {print $2; exit}' /etc/resolv.conf)
            n=0
            while [ $n -lt 10 ]; do
                addr=$(nslookup "$resolve" "$server" 2>/dev/null | awk '/^Address/ {a=$NF} END {print a}')
                case "$addr" in ""|"$server"|*:53) addr="" ;; *) break ;; esac
                n=$((n+1)); sleep 3
            done
            if [ -n "$addr" ]; then
                echo "CLOUDBIOS-GUEST-RESOLVED $resolve $addr (dns $server)" > /dev/ttyS0
            else
                echo "CLOUDBIOS-GUEST-RESOLVE-FAILED $resolve: no answer from ${server:-no server}" > /dev/ttyS0
            fi
        fi
    ) &
fi
# cbguest.count: a counter on the serial console twice a second, with the
# guest's uptime (a live migration must not stop or restart it)
if grep -qw cbguest.count /proc/cmdline; then
    (n=0; while true; do echo "CLOUDBIOS-GUEST-COUNT $n $(cut -d' ' -f1 /proc/uptime)" > /dev/ttyS0; n=$((n+1)); sleep 0.5; done) &
fi
# lines typed on the serial console come back on it (the panel's terminal)
(while true; do
    while read -r line; do echo "serial-typed: $line" > /dev/ttyS0; done < /dev/ttyS0
    sleep 1
done) &
if [ -e /dev/fb0 ]; then
    echo 0 > /sys/class/graphics/fbcon/cursor_blink 2>/dev/null
    # clear the text console and hide its cursor, so that it has nothing to
    # redraw over the colour: typed lines then only touch the top rows
    printf '\033[2J\033[H\033[?25l' > /dev/tty1
    size=$(cat /sys/class/graphics/fb0/virtual_size | tr , ' ')
    set -- $size
    stride=$(cat /sys/class/graphics/fb0/stride)
    bpp=$(cat /sys/class/graphics/fb0/bits_per_pixel)
    # #1E90FF as little-endian pixels: B G R (X)
    case $bpp in
        32) printf '\377\220\036\000' > /tmp/p1; px=4 ;;
        24) printf '\377\220\036' > /tmp/p1; px=3 ;;
        *) printf '\237\034' > /tmp/p1; px=2 ;;
    esac
    n=$(( stride * $2 / px )); c=1
    # double the pattern until it covers the screen, then write it once
    while [ $c -lt $n ]; do cat /tmp/p1 /tmp/p1 > /tmp/p2; mv /tmp/p2 /tmp/p1; c=$((c*2)); done
    dd if=/tmp/p1 of=/dev/fb0 bs=$stride count=$2 2>/dev/null
    rm -f /tmp/p1
    echo "CLOUDBIOS-GUEST-PAINTED ${1}x${2}x${bpp}" > /dev/ttyS0
fi
# echo keyboard lines to the serial console
while true; do
    while read -r line; do echo "typed: $line" > /dev/ttyS0; done < /dev/tty1
    sleep 1
done
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -9) > "$out/initrd.img.tmp"
mv "$out/initrd.img.tmp" "$out/initrd.img"
cp "$kernel" "$out/vmlinuz"
echo "make-guest: $out/vmlinuz $out/initrd.img ($(du -k "$out/initrd.img" | cut -f1) KiB)" >&2
