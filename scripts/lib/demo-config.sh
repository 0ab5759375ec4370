#!/bin/sh
# Writes the demo config directory: cloudbios.yaml (host "demo", user admin,
# one autostarted VM "demo" shown on the local display), boot-menu.cfg and
# the demo guest's kernel and initrd under guest/.
# Usage: scripts/lib/demo-config.sh OUTDIR PASSWORD [GUESTDIR]
set -eu
out=$1; password=$2; guest=${3:-}
mkdir -p "$out/guest"
if [ -n "$guest" ]; then cp "$guest/vmlinuz" "$guest/initrd.img" "$out/guest/"; fi
hash=$(openssl passwd -6 "$password")
cat > "$out/cloudbios.yaml" <<YAML
version: 1
hostname: demo
panel:
  listen: "0.0.0.0:8443"
  users:
    - name: admin
      password_hash: "$hash"
images:
  - name: demo-kernel
    file: guest/vmlinuz
  - name: demo-initrd
    file: guest/initrd.img
vms:
  - name: demo
    memory: 256
    cpus: 1
    kernel: demo-kernel
    initrd: demo-initrd
    append: "console=ttyS0 console=tty1 vga=0x344"
    network: nat
    autostart: true
    display: true
YAML
cat > "$out/boot-menu.cfg" <<'CFG'
# Extra CloudBIOS boot entries (sourced by the ISO's grub.cfg): one per VM
# to dual-run on the local display.
menuentry "CloudBIOS: dual-run VM demo" --id vm-demo {
    linux ($cbroot)/boot/vmlinuz $cbargs cloudbios.display=demo
    initrd ($cbroot)/boot/initramfs.img
}
CFG
