"""intake.smtp_data: DATA read in large pieces gives what the line-by-line reading of RFC 5321
gives (the message up to the line ".", dot-unstuffed; too big or a line too long refused after
reading to the end), however the bytes arrive, and leaves the next command in the stream."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from mailflow.intake.smtp_data import Overrun, read_data
from tests.support.aio import run_apart

LINE_LIMIT = 200
LINES = [b"", b".", b"..", b".x", b"...", b"abc.", b"a.b", b"x" * 150, b"y" * 199,
         b"QUJDRA==", b"\n.", b"text\r"]


def by_the_rfc(lines: list[bytes], size_limit: int) -> tuple[bytes, bool]:
    """What a line-by-line reader keeps (RFC 5321 4.5.2), and whether it refuses the message."""
    kept = [line[1:] if line.startswith(b".") else line for line in lines]
    size = sum(len(line) + 2 for line in lines)
    too_long = any(len(line) + 2 > LINE_LIMIT for line in lines)
    return b"".join(line + b"\r\n" for line in kept), too_long or size > size_limit


def read(stream: bytes, cuts: list[int], size_limit: int) -> tuple[bytes, Overrun, bytes]:
    async def main() -> tuple[bytes, Overrun, bytes]:
        reader = asyncio.StreamReader(limit=LINE_LIMIT)

        async def feed() -> None:
            at = 0
            for cut in sorted(set(cuts)):
                reader.feed_data(stream[at:cut])
                at = cut
                await asyncio.sleep(0)
            reader.feed_data(stream[at:])
            reader.feed_eof()

        feeding = asyncio.create_task(feed())
        content, overrun = await read_data(reader, size_limit, LINE_LIMIT)
        await feeding
        return content, overrun, await reader.read()

    return run_apart(main)  # not on the main thread: a browser test may hold its loop


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(
        st.sampled_from(LINES) | st.binary(max_size=30).filter(lambda b: b"\r\n" not in b),
        max_size=30,
    ),
    cuts=st.lists(st.integers(0, 2000), max_size=12),
    size_limit=st.sampled_from([100_000, 300]),
)
def test_any_message_in_any_pieces_reads_as_line_by_line(
    lines: list[bytes], cuts: list[int], size_limit: int
) -> None:
    lines = [line for line in lines if line != b"."]  # "." alone ends the message
    stream = b"".join(line + b"\r\n" for line in lines) + b".\r\nQUIT\r\n"
    content, overrun, rest = read(stream, cuts, size_limit)
    expected, refused = by_the_rfc(lines, size_limit)
    assert (overrun is not Overrun.NONE) == refused
    if not refused:
        assert content == expected
    assert rest == b"QUIT\r\n"  # the next command stays for the server to read


def test_an_empty_message_and_a_long_one() -> None:
    assert read(b".\r\nQUIT\r\n", [1, 2], 1000) == (b"", Overrun.NONE, b"QUIT\r\n")
    body = b"".join(b"%06d" % i + b"\r\n" for i in range(20_000))  # 160 kB: many stream limits
    assert read(body + b".\r\n", [], 10**6) == (body, Overrun.NONE, b"")
    assert read(body + b".\r\n", [], 100_000)[1] is Overrun.TOO_MUCH
    one_line = b"z" * 1000 + b"\r\n.\r\n"
    assert read(one_line, [], 10**6)[1] is Overrun.TOO_LONG


def test_a_line_end_split_between_two_pieces_ends_the_line() -> None:
    # The stream's limit cuts a piece two bytes before the end of what has arrived: arriving up
    # to just after a CRLF, the piece ends with its "\r" and the next starts with "\n". Two
    # lines each within the limit, together over it, are still two lines.
    head, first, second = b"ab\r\n" * 20, b"x" * 150, b"y" * 150
    stream = head + first + b"\r\n" + second + b"\r\n.\r\n"
    cut = len(head + first) + 3  # just after the CRLF and one more byte
    assert read(stream, [cut], 10**6) == (stream[:-3], Overrun.NONE, b"")
