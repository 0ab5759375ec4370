"""Shared fixtures of the CloudBIOS end-to-end tests (real QEMU, TCG only)."""
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import qemu  # noqa: E402

ISO = os.path.join(qemu.OUT, "cloudbios.iso")
GUEST = os.path.join(qemu.OUT, "guest")


@pytest.fixture(scope="session")
def iso():
    """The built ISO (scripts/test runs scripts/build first; build it here when missing)."""
    if not os.path.exists(ISO):
        subprocess.run([os.path.join(qemu.REPO, "scripts", "build")], check=True)
    return ISO


@pytest.fixture(scope="session")
def guest():
    """The tiny demo guest: kernel + initrd."""
    subprocess.run([os.path.join(qemu.REPO, "scripts", "lib", "make-guest.sh"), GUEST], check=True)
    return {"kernel": os.path.join(GUEST, "vmlinuz"), "initrd": os.path.join(GUEST, "initrd.img")}


@pytest.fixture
def tmpdir_path(tmp_path):
    return str(tmp_path)


@pytest.fixture
def vm_factory():
    """Makes qemu.VM objects and kills every one of them at teardown."""
    made = []

    def make(**kw):
        vm = qemu.VM(**kw)
        made.append(vm)
        return vm

    yield make
    for vm in made:
        vm.cleanup()
