"""parse.mime_hoist: a message parsed with its long base64 runs lifted out is the same tree as
the stdlib's parse of the bytes as they came, wherever the runs stand."""

from __future__ import annotations

import base64
import email
import email.policy
from email.message import Message

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailflow.parse import mime
from mailflow.parse.mime_hoist import hoist, restore
from mailflow.parse.types import MimeLimits

RUN = base64.encodebytes(bytes(range(256)) * 40).replace(b"\n", b"\r\n")  # 140 lines
PLACES = {
    "body": b"Content-Type: image/jpeg\r\nContent-Transfer-Encoding: base64\r\n\r\n{run}",
    "no separator": b"Content-Type: image/jpeg\r\n{run}",  # where a header would be
    "message/rfc822": b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n"
                      b"Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n{run}",
    "delivery-status": b"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: x\r\n"
                       b"\r\n{run}",
}


def message(place: str, run: bytes = RUN, preamble: bytes = b"", epilogue: bytes = b"",
            eol: bytes = b"\r\n") -> bytes:
    part = PLACES[place].replace(b"{run}", run)
    raw = (
        b"From: a@clinic.example\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n' + preamble
        + b"--b1\r\nContent-Type: text/plain\r\n\r\nPatient name: Jane\r\n"
        + b"--b1\r\n" + part + b"\r\n--b1--\r\n" + epilogue
    )
    return raw.replace(b"\r\n", eol)


def tree(msg: Message) -> list[object]:
    out: list[object] = []
    stack = [msg]
    while stack:
        part = stack.pop()
        payload = part._payload  # type: ignore[attr-defined]
        out.append((part.items(), [type(d).__name__ for d in part.defects],
                    payload if isinstance(payload, str) else None, part.preamble, part.epilogue))
        if isinstance(payload, list):
            stack.extend(payload)
    return out


def as_the_stdlib_reads_it(raw: bytes, policy: email.policy.Policy) -> Message:
    return email.message_from_bytes(raw, policy=policy)


@pytest.mark.parametrize("policy", [email.policy.default, email.policy.compat32])
@pytest.mark.parametrize("place", sorted(PLACES))
@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
def test_the_tree_is_the_stdlibs_wherever_the_run_stands(
    place: str, eol: bytes, policy: email.policy.Policy
) -> None:
    raw = message(place, preamble=RUN + b"\r\n", epilogue=RUN, eol=eol)
    hoisted = hoist(raw)
    assert hoisted is not None and len(hoisted.runs) == 3  # the part, preamble and epilogue
    assert len(hoisted.skeleton) < len(raw) // 10
    got = as_the_stdlib_reads_it(hoisted.skeleton, policy)
    assert restore(got, hoisted)  # every run put back: no second parse of the bytes
    assert tree(got) == tree(as_the_stdlib_reads_it(raw, policy))
    parsed = mime._parse(raw, hoisted, policy, MimeLimits())
    assert parsed is not None and tree(parsed) == tree(got)


def test_a_message_holding_the_placeholder_text_gets_another() -> None:
    raw = message("body", preamble=b"MAILFLOWHOISTED0Z00000000\r\n" + RUN)
    hoisted = hoist(raw)
    assert hoisted is not None and all(not t.startswith("MAILFLOWHOISTED0Z") for t in hoisted.runs)
    got = mime._parse(raw, hoisted, email.policy.default, MimeLimits())
    assert got is not None and tree(got) == tree(as_the_stdlib_reads_it(raw, email.policy.default))


def test_a_placeholder_not_found_once_means_the_bytes_as_they_came() -> None:
    raw = message("body")
    hoisted = hoist(raw)
    assert hoisted is not None
    msg = as_the_stdlib_reads_it(hoisted.skeleton, email.policy.default)
    token = next(iter(hoisted.runs))
    msg.preamble = token  # as if the parser had copied it somewhere else too
    assert not restore(msg, hoisted)


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(
        st.sampled_from([b"", b"--b1", b"--b1--", b"Header: v", b" folded", b"text line",
                         b"QUJD", b"=", b"--b2", b'Content-Type: multipart/alternative; '
                         b'boundary="b2"', b"Content-Transfer-Encoding: base64"]),
        max_size=25,
    ),
    runs=st.lists(st.integers(0, 25), max_size=4),
    eol=st.sampled_from([b"\r\n", b"\n"]),
)
def test_any_arrangement_parses_as_the_stdlib_parses_it(
    lines: list[bytes], runs: list[int], eol: bytes
) -> None:
    for at in sorted(runs, reverse=True):
        lines.insert(min(at, len(lines)), RUN.rstrip(b"\r\n").replace(b"\r\n", eol))
    raw = message("body", preamble=eol.join(lines) + eol, epilogue=eol.join(lines), eol=eol)
    hoisted = hoist(raw)
    assert hoisted is not None
    expected = tree(as_the_stdlib_reads_it(raw, email.policy.default))
    got = as_the_stdlib_reads_it(hoisted.skeleton, email.policy.default)
    if restore(got, hoisted):
        assert tree(got) == expected
    else:  # only where the stdlib drops lines it cannot place (a multipart it cannot split)
        skeleton = repr(tree(as_the_stdlib_reads_it(hoisted.skeleton, email.policy.default)))
        assert any(skeleton.count(token) != 1 for token in hoisted.runs)
    parsed = mime._parse(raw, hoisted, email.policy.default, MimeLimits())
    assert parsed is not None and tree(parsed) == expected
