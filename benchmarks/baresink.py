"""The baseline: a bare aiosmtpd server with the same client path as mailflow's door.

STARTTLS (the same certificate and TLS settings as mailflow), AUTH required after TLS and any
login accepted, and a handle_DATA that writes the message to a file, fsyncs it and says 250.
Run in its own process so its CPU and memory are its own:

    python -m benchmarks.baresink --tls-dir VAR --out-dir DIR

It prints "PORT <n>" once listening, and stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from mailflow.store.tls import server_context


class FsyncHandler:
    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.counter = itertools.count(1)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        n = next(self.counter)
        fd = os.open(self.out_dir / f"{n:06d}.eml", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, envelope.original_content or b"")
            os.fsync(fd)
        finally:
            os.close(fd)
        return f"250 2.0.0 Accepted as message {n}"


def accept_any(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    return AuthResult(success=True)


async def serve(tls_dir: Path, out_dir: Path, host: str, port: int, limit: int) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    handler = FsyncHandler(out_dir)
    tls = server_context(tls_dir)

    def factory() -> SMTP:
        return SMTP(
            handler,
            data_size_limit=limit,
            hostname="bare.localhost",
            tls_context=tls,
            require_starttls=False,
            auth_required=True,
            auth_require_tls=True,
            authenticator=accept_any,
            timeout=300,
        )

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = await loop.create_server(factory, host, port)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tls-dir", type=Path, required=True, help="a folder holding tls/*.pem")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--limit", type=int, default=40 * 1024 * 1024)
    args = parser.parse_args()
    asyncio.run(serve(args.tls_dir, args.out_dir, args.host, args.port, args.limit))


if __name__ == "__main__":
    main()
