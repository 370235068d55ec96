"""Right passwords remembered for a few minutes, so a mail client that signs in for every
message it sends pays argon2 (~0.2 s of CPU and 64 MiB) once, not per message.

saslauthd's credential cache (`-c`) does the same for Postfix and Cyrus. What is kept is an
HMAC-SHA256 of the password under a key made when the process starts (never stored, never
shared), filed under the account and its stored hash, with a time it is good until:
- a wrong password never matches, and is checked in full, as slow as ever;
- a changed password misses (the stored hash differs), and is checked in full;
- only approved accounts are remembered: otherwise a guess sent twice would answer fast the
  second time when right, though the sign-in is refused, and tell a pending or disabled
  account's password;
- the lockout and the account's status are checked on every sign-in, remembered or not.
The trade-off: a copy of the process's memory (which holds the master key and patients' data
anyway) would also give each remembered password's MAC to guess against quickly; core dumps
are off for that reason (mailflow/__main__.py). [signin] remember_minutes = 0 turns it off;
a restart forgets everything.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable

REMEMBER_MAX = 10_000  # sign-ins remembered at once in a process; past it the oldest go first


class RememberedPasswords:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = 0.0
        self.clock = clock
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        # (account id, stored hash) -> (MAC, good until); in the order they were remembered,
        # which with one lifetime for all is the order they run out
        self._entries: dict[tuple[int, str], tuple[bytes, float]] = {}

    def configure(self, minutes: float) -> None:
        with self._lock:
            if self.seconds != minutes * 60:
                self.seconds = minutes * 60
                self._entries.clear()

    def mac(self, password: str) -> bytes:
        return hmac.new(self._key, password.encode("utf-8", "surrogatepass"),
                        hashlib.sha256).digest()

    def was_right(self, key: tuple[int, str], mac: bytes) -> bool:
        if self.seconds <= 0:
            return False
        with self._lock:
            self._forget_old()
            found = self._entries.get(key)
        return found is not None and hmac.compare_digest(found[0], mac)

    def remember(self, key: tuple[int, str], mac: bytes) -> None:
        if self.seconds <= 0:
            return
        with self._lock:
            self._entries.pop(key, None)  # put back last: newest
            self._forget_old()
            while len(self._entries) >= REMEMBER_MAX:
                del self._entries[next(iter(self._entries))]
            self._entries[key] = (mac, self.clock() + self.seconds)

    def __len__(self) -> int:
        with self._lock:
            self._forget_old()
            return len(self._entries)

    def _forget_old(self) -> None:
        now = self.clock()
        while self._entries:
            first = next(iter(self._entries))
            if self._entries[first][1] > now:
                break
            del self._entries[first]
