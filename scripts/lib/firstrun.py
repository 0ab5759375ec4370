"""The first-run setup as the e2e tests meet it: the one-time setup code the
machine's serial console shows while no panel user exists."""
import re

CODE_RE = re.compile(r"setup code ([0-9A-Z]{4}-[0-9A-Z]{4})")


def setup_code(vm, timeout=300):
    """The code as the machine's serial console shows it."""
    vm.wait_serial("enter the setup code ", timeout)
    codes = CODE_RE.findall(vm.serial())
    assert codes, vm.serial()[-3000:]
    assert len(set(codes)) == 1, codes  # one code until it is used
    return codes[-1]
