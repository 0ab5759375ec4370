#!/usr/bin/env python3
"""Builds (once, cached) a real Debian 12 guest disk image from Debian's packages.

Usage: scripts/lib/make-debian-guest.py OUTDIR   -> prints OUTDIR/debian12.qcow2

The root filesystem comes from mmdebstrap (--mode=root, the mirrors this
machine's apt uses): the Debian kernel, systemd, cloud-init (NoCloud only,
network by systemd-networkd), openssh-server, qemu-guest-agent and sudo;
no recommends, no docs, man pages or translations. No root password, no user,
no sshd host keys and an empty /etc/machine-id: cloud-init makes the user and
the host keys from its seed at first boot.

The disk (2 GiB raw, sparse, then a compressed qcow2) is made without mounting
anything and without loop devices:
  GPT  1: 1 MiB BIOS boot partition  (GRUB core.img, installed by hand)
       2: 64 MiB EFI system partition (FAT32: \\EFI\\BOOT\\BOOTX64.EFI; mtools)
       3: root ext4, label "debroot"  (mkfs.ext4 -d ROOTDIR)
  MBR: GRUB's boot.img pointing at core.img, protective partition table kept.
Both GRUBs are made with grub-mkimage; their early config finds the root
filesystem by label and reads /boot/grub/grub.cfg there (serial + console,
kernel console=tty0 console=ttyS0,115200).

Cache: OUTDIR/debian12.key holds the sha256 of this script and the mmdebstrap
command line; when it matches and the image exists nothing is built. The
image is built in a temporary directory under OUTDIR and renamed into place.
"""
import fcntl
import glob
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

SUITE = "bookworm"
IMAGE_NAME = "debian12.qcow2"
KEY_NAME = "debian12.key"
INFO_NAME = "debian12.json"

DISK_SIZE = 2 << 30                       # bytes
SECTOR = 512
BIOS_START, BIOS_SECTORS = 2048, 2048     # 1 MiB at 1 MiB
ESP_START, ESP_SECTORS = 4096, 131072     # 64 MiB at 2 MiB
ROOT_START = 135168                       # 66 MiB
GPT_BACKUP_SECTORS = 33                   # backup entries + header at the end
ROOT_SECTORS = ((DISK_SIZE // SECTOR - GPT_BACKUP_SECTORS - ROOT_START) // 8) * 8
ROOT_LABEL = "debroot"
ESP_VOLUME_ID = "DEB12E51"                # FAT volume id -> fstab UUID=DEB1-2E51

TYPE_BIOS = "21686148-6449-6E6F-744E-656564454649"
TYPE_ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
TYPE_LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"

PACKAGES = [
    "linux-image-amd64", "initramfs-tools", "systemd-sysv", "udev", "dbus", "libpam-systemd",
    "systemd-resolved", "iproute2", "netbase", "cloud-init", "cloud-guest-utils",
    "openssh-server", "qemu-guest-agent", "sudo", "ca-certificates",
    "grub-pc-bin", "grub-efi-amd64-bin",
]

# Kept out of the image by dpkg (also for packages installed later in the guest).
DPKG_EXCLUDES = [
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/lintian/*",
    "path-exclude=/usr/share/linda/*",
    "path-exclude=/usr/share/bug/*",
]

FSTAB = (f"LABEL={ROOT_LABEL}\t/\text4\terrors=remount-ro\t0\t1\n"
         f"UUID={ESP_VOLUME_ID[:4]}-{ESP_VOLUME_ID[4:]}\t/boot/efi\tvfat\tumask=0077,nofail\t0\t2\n")

# Run by mmdebstrap once the Essential packages are in, before the kernel:
# initramfs-tools then sees the root filesystem type (fsck in the initramfs),
# no resume device to look for, and no floppy driver to load (QEMU's i440fx
# has a floppy controller without a drive: I/O errors on fd0 at every probe).
ESSENTIAL_HOOK = (
    'printf "%b" "' + FSTAB.replace("\t", "\\t").replace("\n", "\\n") + '" > "$1/etc/fstab"'
    ' && mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/etc/modprobe.d"'
    ' && echo RESUME=none > "$1/etc/initramfs-tools/conf.d/resume"'
    ' && echo "blacklist floppy" > "$1/etc/modprobe.d/cloudbios-no-floppy.conf"'
)

BIOS_MODULES = ["biosdisk", "part_gpt", "ext2", "search", "search_label", "configfile", "normal",
                "linux", "echo", "test", "serial", "terminal", "gzio"]
EFI_MODULES = ["part_gpt", "ext2", "search", "search_label", "configfile", "normal",
               "linux", "echo", "test", "serial", "terminal", "gzio", "efi_gop"]

EARLY_CFG = f"""search --no-floppy --label {ROOT_LABEL} --set=root
set prefix=($root)/boot/grub
configfile ($root)/boot/grub/grub.cfg
"""

CLOUD_CFG = """# CloudBIOS test guest: the seed is a local NoCloud volume (label cidata);
# never wait for network metadata services.
datasource_list: [NoCloud, None]
manage_etc_hosts: true
locale: C.UTF-8
ssh_genkeytypes: [rsa, ecdsa, ed25519]
system_info:
  network:
    renderers: [networkd]
    activators: [networkd]
"""

HOSTS = """127.0.0.1\tlocalhost
::1\t\tlocalhost ip6-localhost ip6-loopback
ff02::1\t\tip6-allnodes
ff02::2\t\tip6-allrouters
"""

# Host keys are not in the image: cloud-init makes them at first boot
# (cloud-init.service runs before ssh.service); this generates any still
# missing before sshd's config test, whatever runs first.
SSH_KEYGEN_DROPIN = """[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
"""

# cloud-init waits for the network; don't let a guest without a configured
# link hang there for two minutes.
WAIT_ONLINE_DROPIN = """[Service]
ExecStart=
ExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=30
"""

APT_DEPS = {  # host tool -> Debian package
    "mmdebstrap": "mmdebstrap", "mkfs.ext4": "e2fsprogs", "mkfs.fat": "dosfstools",
    "mmd": "mtools", "mcopy": "mtools", "sfdisk": "fdisk", "qemu-img": "qemu-utils",
}


def log(msg):
    print(f"make-debian-guest: {msg}", file=sys.stderr, flush=True)


def run(args, **kw):
    line = " ".join(args)
    log("$ " + (line if len(line) < 400 else line[:400] + " ..."))
    subprocess.run(args, check=True, **kw)


def ensure_host_tools():
    missing = sorted({pkg for tool, pkg in APT_DEPS.items() if shutil.which(tool) is None})
    if missing:
        log("installing " + " ".join(missing))
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends"] + missing,
                       check=True, env=env, stdout=subprocess.DEVNULL)


def host_mirrors():
    """The deb sources of this machine's apt for SUITE, as one-line entries."""
    lines = []
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        with open(path) as f:
            stanzas = f.read().split("\n\n")
        for stanza in stanzas:
            fields, key = {}, None
            for line in stanza.splitlines():
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                if line[0] in " \t" and key:
                    fields[key] += " " + line.strip()
                    continue
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
            if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
                continue
            opts = f"[signed-by={fields['signed-by']}] " if fields.get("signed-by", "").startswith("/") else ""
            for uri in fields.get("uris", "").split():
                for suite in fields.get("suites", "").split():
                    if suite.split("-")[0] == SUITE:
                        lines.append(f"deb {opts}{uri} {suite} {fields.get('components', 'main')}")
    for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
        try:
            with open(path) as f:
                for line in f:
                    words = line.split("#", 1)[0].split()
                    if words and words[0] == "deb":
                        rest = words[1:]
                        opts = ""
                        if rest and rest[0].startswith("["):
                            while rest and not rest[0].endswith("]"):
                                opts += rest.pop(0) + " "
                            opts += rest.pop(0) + " "
                        if len(rest) >= 2 and rest[1].split("-")[0] == SUITE:
                            lines.append(f"deb {opts}{' '.join(rest)}")
        except FileNotFoundError:
            pass
    if not lines:
        lines = [f"deb http://deb.debian.org/debian {SUITE} main",
                 f"deb http://deb.debian.org/debian {SUITE}-updates main",
                 f"deb http://deb.debian.org/debian-security {SUITE}-security main"]
    return list(dict.fromkeys(lines))


def mmdebstrap_args(rootdir):
    args = ["mmdebstrap", "--mode=root", "--variant=minbase", "--format=directory",
            "--include=" + ",".join(PACKAGES),
            "--aptopt=Acquire::Languages \"none\"",
            "--essential-hook=" + ESSENTIAL_HOOK]
    args += ["--dpkgopt=" + o for o in DPKG_EXCLUDES]
    return args + [SUITE, rootdir] + host_mirrors()


def cache_key(cmdline):
    h = hashlib.sha256()
    with open(os.path.abspath(__file__), "rb") as f:
        h.update(f.read())
    h.update(b"\0" + json.dumps(cmdline).encode())
    return h.hexdigest()


def mounts_under(path):
    path = os.path.realpath(path)
    found = []
    with open("/proc/self/mounts") as f:
        for line in f:
            mp = line.split()[1].encode().decode("unicode_escape")
            if mp == path or mp.startswith(path + "/"):
                found.append(mp)
    return found


def remove_tree(path):
    """rm -rf that never crosses into something still mounted (a killed
    mmdebstrap may leave /dev, /proc or /sys bind mounts in its chroot)."""
    if not os.path.lexists(path):
        return
    for mp in sorted(mounts_under(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], check=False)
    if mounts_under(path):
        raise SystemExit(f"make-debian-guest: {path} still has mounts, not removing it")
    subprocess.run(["rm", "-rf", "--one-file-system", path], check=True)


def write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.islink(path):
        os.unlink(path)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def chroot(root, *args, **kw):
    run(["chroot", root] + list(args), **kw)


def customize(root):
    """Everything beyond the packages: first-boot state, cloud-init, GRUB config."""
    write(f"{root}/etc/hostname", "localhost\n")
    write(f"{root}/etc/hosts", HOSTS)
    write(f"{root}/etc/default/locale", "LANG=C.UTF-8\n")
    with open(f"{root}/etc/fstab") as f:
        if f"LABEL={ROOT_LABEL}" not in f.read():
            raise SystemExit("make-debian-guest: the essential hook did not write /etc/fstab")
    os.makedirs(f"{root}/boot/efi", exist_ok=True)

    # resolv.conf: systemd-resolved's stub (the host's copy must not stay)
    rc = f"{root}/etc/resolv.conf"
    if os.path.lexists(rc):
        os.unlink(rc)
    os.symlink("../run/systemd/resolve/stub-resolv.conf", rc)

    # cloud-init: NoCloud only, networkd renderer
    subprocess.run(["chroot", root, "debconf-set-selections"], check=True,
                   input=b"cloud-init cloud-init/datasources multiselect NoCloud, None\n")
    write(f"{root}/etc/cloud/cloud.cfg.d/90_dpkg.cfg",
          "# to update this file, run dpkg-reconfigure cloud-init\ndatasource_list: [ NoCloud, None ]\n")
    write(f"{root}/etc/cloud/cloud.cfg.d/99_cloudbios.cfg", CLOUD_CFG)
    chroot(root, "systemctl", "enable", "systemd-networkd.service", "systemd-resolved.service")
    write(f"{root}/etc/systemd/system/systemd-networkd-wait-online.service.d/cloudbios.conf", WAIT_ONLINE_DROPIN)

    # no sshd host keys, generated at first boot
    for k in glob.glob(f"{root}/etc/ssh/ssh_host_*"):
        os.unlink(k)
    write(f"{root}/etc/systemd/system/ssh.service.d/cloudbios-keygen.conf", SSH_KEYGEN_DROPIN)

    # root stays locked ('*' in shadow from base-passwd), no other user
    with open(f"{root}/etc/shadow") as f:
        for line in f:
            name, pw = line.split(":")[:2]
            if name == "root" and pw not in ("*", "!", "!*"):
                raise SystemExit(f"make-debian-guest: root has a password in the image ({pw!r})")

    # empty machine-id: systemd makes one at first boot
    write(f"{root}/etc/machine-id", "", 0o444)
    for p in [f"{root}/var/lib/dbus/machine-id", f"{root}/var/lib/systemd/random-seed",
              f"{root}/var/lib/systemd/credential.secret"]:
        if os.path.lexists(p):
            os.unlink(p)

    # leftovers
    for pattern in ["var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_*",
                    "var/cache/debconf/*-old", "var/lib/dpkg/*-old", "var/log/*.log", "var/log/apt/*",
                    "var/cache/ldconfig/aux-cache", "tmp/*", "var/tmp/*", "root/.bash_history",
                    "vmlinuz.old", "initrd.img.old"]:
        for p in glob.glob(f"{root}/{pattern}"):
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            else:
                os.unlink(p)

    # GRUB: config and module directories (the early image carries the rest)
    kernel, initrd = "/vmlinuz", "/initrd.img"
    if not (os.path.lexists(root + kernel) and os.path.lexists(root + initrd)):
        ks = sorted(glob.glob(f"{root}/boot/vmlinuz-*"))
        if not ks:
            raise SystemExit("make-debian-guest: no kernel in the image")
        ver = ks[-1].split("/boot/vmlinuz-")[1]
        kernel, initrd = f"/boot/vmlinuz-{ver}", f"/boot/initrd.img-{ver}"
        if not os.path.exists(root + initrd):
            raise SystemExit(f"make-debian-guest: no initramfs {initrd} in the image")
    for platform in ("i386-pc", "x86_64-efi"):
        src, dst = f"{root}/usr/lib/grub/{platform}", f"{root}/boot/grub/{platform}"
        os.makedirs(dst, exist_ok=True)
        for f in os.listdir(src):
            if f.endswith((".mod", ".lst")):
                shutil.copy2(os.path.join(src, f), dst)
    write(f"{root}/boot/grub/grub.cfg", f"""# CloudBIOS test guest (scripts/lib/make-debian-guest.py); not made by update-grub
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=1
set default=0
menuentry 'Debian GNU/Linux 12' {{
    search --no-floppy --label {ROOT_LABEL} --set=root
    linux {kernel} root=LABEL={ROOT_LABEL} ro console=tty0 console=ttyS0,115200
    initrd {initrd}
}}
""")


def grub_images(root, work):
    """core.img (i386-pc) and BOOTX64.EFI, made with the guest's own grub-mkimage."""
    tmp = f"{root}/tmp/cloudbios-grub"
    os.makedirs(tmp)
    write(f"{tmp}/early.cfg", EARLY_CFG)
    for platform, mods, out in (("i386-pc", BIOS_MODULES, "core.img"), ("x86_64-efi", EFI_MODULES, "BOOTX64.EFI")):
        missing = [m for m in mods if not os.path.exists(f"{root}/usr/lib/grub/{platform}/{m}.mod")]
        if missing:
            raise SystemExit(f"make-debian-guest: GRUB {platform} lacks modules {missing}")
        chroot(root, "grub-mkimage", "-O", platform, "-d", f"/usr/lib/grub/{platform}",
               "-c", "/tmp/cloudbios-grub/early.cfg", "-p", "/boot/grub",
               "-o", f"/tmp/cloudbios-grub/{out}", *mods)
        shutil.move(f"{tmp}/{out}", f"{work}/{out}")
    shutil.copy2(f"{root}/usr/lib/grub/i386-pc/boot.img", f"{work}/boot.img")
    shutil.rmtree(tmp)


def patch_core(core, core_sector):
    """core.img's first sector (diskboot.img) ends with its blocklist:
    struct { u64 start; u16 len; u16 segment } at 0x200 - 12, aimed here at
    the sectors right after the first one (grub-bios-setup's embedding)."""
    if len(core) % SECTOR:
        core += bytes(SECTOR - len(core) % SECTOR)
    sectors = len(core) // SECTOR
    if sectors > BIOS_SECTORS:
        raise SystemExit(f"make-debian-guest: core.img ({sectors} sectors) exceeds the BIOS boot partition")
    at = SECTOR - 12
    start, length, segment = struct.unpack_from("<QHH", core, at)
    if length != sectors - 1 or segment != 0x820:
        raise SystemExit(f"make-debian-guest: unexpected core.img blocklist (len {length}, segment {segment:#x}, "
                         f"{sectors} sectors)")
    core = bytearray(core)
    struct.pack_into("<QHH", core, at, core_sector + 1, sectors - 1, 0x820)
    return bytes(core)


def make_mbr(boot_img, existing, core_sector):
    """boot.img with the existing BPB and partition table, as grub-bios-setup
    writes it (grub/include/grub/i386/pc/boot.h offsets)."""
    if len(boot_img) != SECTOR or len(existing) != SECTOR:
        raise SystemExit("make-debian-guest: boot.img / MBR must be 512 bytes")
    m = bytearray(boot_img)
    m[0x03:0x5a] = existing[0x03:0x5a]          # BPB (zeros on a protective MBR)
    m[0x1b8:0x1fe] = existing[0x1b8:0x1fe]      # NT disk signature + partition table
    struct.pack_into("<Q", m, 0x5c, core_sector)  # GRUB_BOOT_MACHINE_KERNEL_SECTOR
    m[0x64] = 0xff                              # boot drive: the BIOS's (write_rootdev)
    if m[0x66] != 0xeb:
        raise SystemExit("make-debian-guest: boot.img has no boot drive check jump at 0x66")
    m[0x66:0x68] = b"\x90\x90"                  # hard disk: no floppy drive check
    m[0x1fe:0x200] = b"\x55\xaa"
    return bytes(m)


def dd(src, dst, offset_bytes, bs=1 << 20):
    if offset_bytes % bs:
        bs = SECTOR
    run(["dd", f"if={src}", f"of={dst}", f"bs={bs}", f"seek={offset_bytes // bs}",
         "conv=notrunc,sparse", "status=none"])


def build_disk(root, work):
    grub_images(root, work)
    disk = f"{work}/disk.raw"
    with open(disk, "wb") as f:
        f.truncate(DISK_SIZE)
    layout = ("label: gpt\n"
              f"start={BIOS_START}, size={BIOS_SECTORS}, type={TYPE_BIOS}, name=\"bios\"\n"
              f"start={ESP_START}, size={ESP_SECTORS}, type={TYPE_ESP}, name=\"esp\"\n"
              f"start={ROOT_START}, size={ROOT_SECTORS}, type={TYPE_LINUX}, name=\"root\"\n")
    run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", disk], input=layout.encode())

    # ESP: FAT32 with the removable-media path UEFI firmware boots by default
    esp = f"{work}/esp.img"
    run(["mkfs.fat", "-C", "-F", "32", "-n", "EFI", "-i", ESP_VOLUME_ID, esp, str(ESP_SECTORS * SECTOR // 1024)],
        stdout=subprocess.DEVNULL)
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    run(["mmd", "-i", esp, "::/EFI", "::/EFI/BOOT"], env=env)
    run(["mcopy", "-i", esp, f"{work}/BOOTX64.EFI", "::/EFI/BOOT/BOOTX64.EFI"], env=env)

    # root filesystem from the tree
    rootimg = f"{work}/root.ext4"
    with open(rootimg, "wb") as f:
        f.truncate(ROOT_SECTORS * SECTOR)
    run(["mkfs.ext4", "-q", "-F", "-L", ROOT_LABEL, "-d", root, rootimg])
    run(["e2fsck", "-fn", rootimg], stdout=subprocess.DEVNULL)

    # BIOS: core.img in partition 1, boot.img in the MBR
    with open(f"{work}/core.img", "rb") as f:
        core = patch_core(f.read(), BIOS_START)
    with open(f"{work}/core.patched", "wb") as f:
        f.write(core)
    dd(f"{work}/core.patched", disk, BIOS_START * SECTOR)
    dd(esp, disk, ESP_START * SECTOR)
    dd(rootimg, disk, ROOT_START * SECTOR)
    with open(disk, "r+b") as f:
        existing = f.read(SECTOR)
        with open(f"{work}/boot.img", "rb") as b:
            mbr = make_mbr(b.read(), existing, BIOS_START)
        f.seek(0)
        f.write(mbr)
    return disk


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: make-debian-guest.py OUTDIR")
    if os.geteuid() != 0:
        raise SystemExit("make-debian-guest: needs root (mmdebstrap --mode=root, chroot)")
    out = os.path.abspath(sys.argv[1])
    os.makedirs(out, exist_ok=True)
    image, keyfile = os.path.join(out, IMAGE_NAME), os.path.join(out, KEY_NAME)

    lockf = open(os.path.join(out, ".debian12.lock"), "w")
    fcntl.flock(lockf, fcntl.LOCK_EX)   # one build per OUTDIR; later callers reuse it

    cmdline = mmdebstrap_args("ROOTDIR")
    key = cache_key(cmdline)
    try:
        with open(keyfile) as f:
            if f.read().strip() == key and os.path.isfile(image):
                print(image)
                return
    except FileNotFoundError:
        pass

    ensure_host_tools()
    for stale in glob.glob(os.path.join(out, ".build-*")):
        log(f"removing stale {stale}")
        remove_tree(stale)
    t0 = time.monotonic()
    work = tempfile.mkdtemp(prefix=".build-", dir=out)
    os.chmod(work, 0o755)   # apt downloads as _apt into the chroot below it
    try:
        root = os.path.join(work, "rootfs")
        run([root if a == "ROOTDIR" else a for a in cmdline])
        customize(root)
        disk = build_disk(root, work)
        remove_tree(root)
        qcow = os.path.join(work, IMAGE_NAME)
        run(["qemu-img", "convert", "-c", "-O", "qcow2", disk, qcow])
        os.unlink(disk)
        if os.path.exists(keyfile):
            os.unlink(keyfile)
        os.replace(qcow, image)
        seconds = round(time.monotonic() - t0)
        with open(os.path.join(work, INFO_NAME), "w") as f:
            json.dump({"key": key, "build_seconds": seconds, "bytes": os.path.getsize(image),
                       "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, f)
        os.replace(os.path.join(work, INFO_NAME), os.path.join(out, INFO_NAME))
        with open(keyfile + ".tmp", "w") as f:
            f.write(key + "\n")
        os.replace(keyfile + ".tmp", keyfile)
        log(f"built {image} ({os.path.getsize(image) >> 20} MiB) in {seconds} s")
    finally:
        remove_tree(work)
    print(image)


if __name__ == "__main__":
    main()
