#!/bin/sh
# Installs the Debian packages CloudBIOS builds and tests with, if missing.
# Usage: scripts/lib/deps.sh [build|test]
set -eu
BUILD_PKGS="qemu-system-x86 qemu-utils ovmf seabios grub-pc-bin grub-efi-amd64-bin grub-common shim-signed grub-efi-amd64-signed
xorriso mtools linux-image-amd64 busybox-static libblkid-dev libparted-dev libmicrohttpd-dev
libvncserver-dev libgnutls28-dev nettle-dev libxxhash-dev libcrypt-dev libstdc++-12-dev novnc zstd cpio squashfs-tools e2fsprogs dosfstools parted kmod
fdisk util-linux iproute2 dnsmasq-base nftables ca-certificates curl python3 openssl erofs-utils"
TEST_PKGS="chromium chromium-driver wrk nginx-light python3-pytest python3-selenium python3-websocket imagemagick
openssh-client mmdebstrap cloud-image-utils docker-registry skopeo etcd-server xxhash"
want="$BUILD_PKGS"
[ "${1:-build}" = test ] && want="$BUILD_PKGS $TEST_PKGS"
missing=""
for p in $want; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "deps: installing$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing >/dev/null
    # etcd-server starts an etcd service of its own; the fleet runs its members itself
    case "$missing" in *etcd-server*) systemctl disable --now etcd >/dev/null 2>&1 || true ;; esac
fi

# promtool (checks the daemon's /metrics): Debian's prometheus package pulls
# some 300 MB of web assets with it, so only its promtool binary is taken.
if [ "${1:-build}" = test ] && ! command -v promtool >/dev/null 2>&1; then
    echo "deps: installing promtool (from Debian's prometheus package)" >&2
    tmp=$(mktemp -d)
    if ! (cd "$tmp" && apt-get download -q prometheus >/dev/null 2>&1); then
        apt-get update -q >/dev/null
        (cd "$tmp" && apt-get download -q prometheus >/dev/null 2>&1)
    fi
    dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
    install -m 755 "$tmp/x/usr/bin/promtool" /usr/local/bin/promtool
    rm -rf "$tmp"
fi
