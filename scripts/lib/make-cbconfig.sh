#!/bin/sh
# Makes a CBCONFIG volume: a FAT image labelled CBCONFIG holding the contents
# of SRCDIR at its root (cloudbios.yaml, boot-menu.cfg, guest images…).
# Usage: scripts/lib/make-cbconfig.sh OUT.img SRCDIR
set -eu
out=$1; src=$2
[ -f "$src/cloudbios.yaml" ] || echo "make-cbconfig: warning: no cloudbios.yaml in $src" >&2
kib=$(du -sk "$src" | cut -f1)
kib=$(( kib + kib / 4 + 2048 ))
rm -f "$out"
mkfs.fat -C -n CBCONFIG "$out" "$kib" >/dev/null
MTOOLS_SKIP_CHECK=1 mcopy -s -i "$out" "$src"/* ::/
