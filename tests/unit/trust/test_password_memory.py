"""A burst of sign-ins holds at most [signin] hash_concurrency hashes' memory at once (1).

Each argon2 check holds its whole memory cost while it runs; without a bound, eight logins at
once on one process held eight times 64 MiB. Measured as a user of the machine would: the peak
resident memory (VmHWM) of a fresh process checking eight passwords on eight threads.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

MIB = 1024 * 1024
COST_MIB = 96  # large beside the interpreter, so the peak shows how many ran at once

_BURST = f"""
import sys, threading
from argon2 import PasswordHasher
from mailflow.db.models import Account
from mailflow.trust import passwords

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

passwords.set_cost(1, {COST_MIB * 1024}, 1, int(sys.argv[1]))
account = Account(email="dr@clinic.test", password_hash=passwords.hash_password("correct horse 1"))
before = hwm()
barrier = threading.Barrier(8)
results = []
def login(password):
    barrier.wait()
    results.append(passwords.check_password(account, password))
threads = [threading.Thread(target=login, args=(f"guess {{i}} wrong",)) for i in range(7)]
threads.append(threading.Thread(target=login, args=("correct horse 1",)))
for t in threads: t.start()
for t in threads: t.join()
print(hwm() - before, sorted(results).count(True))
"""


def _burst(concurrency: int) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", _BURST, str(concurrency)], capture_output=True,
                         text=True, check=True).stdout.split()
    return int(out[0]), int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_a_burst_of_logins_holds_at_most_the_configured_number_of_hashes():
    # the peak before the burst already holds one hash (the password was hashed)
    grown, right = _burst(1)
    assert right == 1  # the one right password still signs in, the wrong ones do not
    assert grown < COST_MIB * MIB // 2  # one at a time: no more than the hash before
    grown_unbounded, _ = _burst(8)
    assert grown_unbounded > 2 * COST_MIB * MIB  # the measure does see more at once
