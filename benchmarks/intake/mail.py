"""The client side: the case emails (12 MP photos), sending them over SMTP with only DATA
timed, and the NOOP probe that shows how long a server's event loop leaves a client waiting."""

from __future__ import annotations

import io
import os
import re
import secrets
import smtplib
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageChops

from benchmarks.intake.plan import CASES, PASSWORD, PHOTO_SIZE, PROVIDER, TOKEN
from tests.support.images import skin_photo
from tests.support.mail import FULL_FORM, case_email, client_context

PHOTO_CACHE = Path(tempfile.gettempdir()) / "mailflow-bench-photos-v1"


def textured_photo(seed: int) -> bytes:
    """A ~3 MB 12 MP JPEG: the test suite's synthetic skin photo plus fine sensor-like noise.
    Made once and kept in PHOTO_CACHE (0.6 s each to make)."""
    path = PHOTO_CACHE / f"skin-{PHOTO_SIZE[0]}x{PHOTO_SIZE[1]}-{seed}.jpg"
    with suppress(OSError):
        data = path.read_bytes()
        if data.startswith(b"\xff\xd8") and data.endswith(b"\xff\xd9"):
            return data
    base = Image.open(io.BytesIO(skin_photo(*PHOTO_SIZE, seed=seed))).convert("RGB")
    noise = Image.effect_noise(PHOTO_SIZE, 4).convert("RGB")
    img = ImageChops.add(base, noise, 1.0, -128)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    data = out.getvalue()
    with suppress(OSError):
        PHOTO_CACHE.mkdir(exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(data)
        tmp.replace(path)
    return data


def message_template(photos: Sequence[tuple[str, bytes]]) -> bytes:
    body = FULL_FORM + f"\nBenchmark reference: {TOKEN.decode()}\n"
    msg = case_email(
        PROVIDER, CASES, body, photos, headers={"Message-ID": f"<{TOKEN.decode()}@client.test>"}
    )
    raw = re.sub(rb"(?<!\r)\n", b"\r\n", msg.as_bytes())
    assert raw.count(TOKEN) == 2, "the per-message token must be in a header and the body"
    return raw


class Messages:
    """Unique instances of a template: a new Message-ID and body line each (no de-duplication)."""

    def __init__(self) -> None:
        self.run = secrets.token_hex(3)
        self.counter = 0
        self.lock = threading.Lock()

    def make(self, template: bytes) -> bytes:
        with self.lock:
            self.counter += 1
            token = f"BENCH-{self.run}{self.counter:04d}".encode()
        assert len(token) == len(TOKEN)
        return template.replace(TOKEN, token)


@dataclass(frozen=True)
class Sent:
    ref: int | None  # the number in "250 2.0.0 Accepted as message N"
    code: int
    reply: str
    t_data: float  # perf_counter when DATA was sent
    t_reply: float  # perf_counter when its final reply arrived

    @property
    def data_ms(self) -> float:
        return (self.t_reply - self.t_data) * 1000


def send(port: int, raw: bytes) -> Sent:
    """One message on its own connection; only smtp.data(raw) is inside the timer."""
    with smtplib.SMTP("127.0.0.1", port, timeout=180) as smtp:
        smtp.ehlo("client.test")
        smtp.starttls(context=client_context())
        smtp.ehlo("client.test")
        smtp.login(PROVIDER, PASSWORD)
        code, reply = smtp.mail(PROVIDER)
        if code == 250:
            code, reply = smtp.rcpt(CASES)
        if code not in (250, 251):
            now = time.perf_counter()
            return Sent(None, code, reply.decode(errors="replace"), now, now)
        t_data = time.perf_counter()
        code, reply = smtp.data(raw)
        t_reply = time.perf_counter()
    text_ = reply.decode(errors="replace")
    found = re.search(r"message (\d+)", text_)
    ref = int(found.group(1)) if code == 250 and found else None
    return Sent(ref, code, text_, t_data, t_reply)


def send_sequential(
    port: int, count: int, make: Callable[[], bytes], between: Callable[[Sent], None] | None = None
) -> list[Sent]:
    out = []
    for _ in range(count):
        sent = send(port, make())
        out.append(sent)
        if between is not None:
            between(sent)
    return out


def send_concurrent(port: int, clients: int, each: int, make: Callable[[], bytes]) -> list[Sent]:
    results: list[list[Sent]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []

    def client(i: int) -> None:
        try:
            results[i] = send_sequential(port, each, make)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return [s for r in results for s in r]


class LoopProbe(threading.Thread):
    """An authenticated, otherwise idle connection that sends NOOP every 20 ms: its round trip
    shows how long the server's event loop goes without answering while others send."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.samples: list[tuple[float, float]] = []  # (perf_counter at send, round trip ms)
        self._halt = threading.Event()
        self._ready = threading.Event()
        self.error = ""

    def run(self) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=60) as smtp:
                smtp.ehlo("probe.test")
                smtp.starttls(context=client_context())
                smtp.ehlo("probe.test")
                smtp.login(PROVIDER, PASSWORD)
                self._ready.set()
                while not self._halt.wait(0.02):
                    t = time.perf_counter()
                    smtp.noop()
                    self.samples.append((t, (time.perf_counter() - t) * 1000))
        except (OSError, smtplib.SMTPException) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self._ready.set()

    def between(self, start: float, end: float) -> list[float]:
        return [ms for t, ms in self.samples if start <= t < end]

    def __enter__(self) -> LoopProbe:
        self.start()
        self._ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        self.join(30)
