"""A tiny real DNS server on 127.0.0.1 (UDP), answering from a table: the provider's DKIM key,
SPF and DMARC records, as their DNS would publish them. It can be stopped and started again on
the same port, to be a DNS server that is down for a while."""

from __future__ import annotations

import socket
import threading

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailflow.crypto.dkim import dns_record


def signing_key() -> tuple[bytes, str]:
    """A sender's DKIM key (PEM, for dkimpy to sign with) and the TXT value its DNS publishes
    for it, written as `mailflow dkim dns` writes ours."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return pem, dns_record(key, "s1", "unused.test").value


def txt_strings(value: str) -> str:
    """A TXT record's text form: the value in quoted strings of at most 255 characters."""
    return " ".join(f'"{value[i:i + 255]}"' for i in range(0, len(value), 255))


class TinyDns:
    def __init__(self, records: dict[tuple[str, str], list[str]]) -> None:
        # (name, type) -> values in text form; names without the trailing dot, any case
        self.records = {(name.lower().rstrip(".") + ".", rdtype.upper()): values
                        for (name, rdtype), values in records.items()}
        self.port = 0
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> TinyDns:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.settimeout(0.1)  # how often the loop looks at the stop flag
        self.port = sock.getsockname()[1]
        self._sock, self._stop = sock, threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(sock, self._stop), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()
        self._sock = self._thread = None

    def _answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text().lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        values = self.records.get((name, rdtype))
        if values:
            response.answer.append(
                dns.rrset.from_text_list(question.name, 60, "IN", rdtype, values))
        elif not any(known == name for known, _ in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()

    def _serve(self, sock: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                wire, client = sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            sock.sendto(self._answer(wire), client)
