"""outbound/plainhtml.py: an email's text as escaped HTML that reflows on a phone."""

from __future__ import annotations

from mailflow.outbound.plainhtml import plain_to_html

WRAPPED = ("To answer, reply to this email. To close the case, write \"Close\" on a line\n"
           "of its own.")


def test_what_a_sender_typed_is_escaped_never_markup() -> None:
    html = str(plain_to_html('Hi <script>alert(1)</script> & "you"\n'
                             'See https://x.test/a?b=1&c=<2>.'))
    assert "<script>" not in html and "&lt;script&gt;" in html and "&amp; &#34;you&#34;" in html
    assert '<a href="https://x.test/a?b=1&amp;c=" ' in html  # the URL stops at "<"


def test_wrapped_lines_reflow_and_short_lines_keep_their_breaks() -> None:
    html = str(plain_to_html(WRAPPED + "\n\nName: \nPractice: "))
    assert 'a line of its own.</p>' in html  # one paragraph, no break where the text wrapped
    assert "Name:<br>\nPractice:</p>" in html


def test_lists_links_quotes_and_the_signature() -> None:
    html = str(plain_to_html(
        "Please reply with:\n  - Date of birth\n  - a photo of the whole area\n\n"
        "1. Set your password:\n   https://derm.test/set-password/abc\n\n2. Send a case.\n\n"
        "  Likely diagnosis: eczema\n\nEmail help@derm.test.\n"
        "--\nmailflow\nThis answer is advice to the doctor who sent the case."))
    assert "<li" in html and html.count("<li") == 4
    assert '<ol start="2"' in html  # a numbered list cut by a blank line goes on
    assert '<a href="https://derm.test/set-password/abc"' in html
    assert '<a href="mailto:help@derm.test"' in html and "help@derm.test</a>." in html
    assert "background:#f4f6f8" in html and "Likely diagnosis: eczema" in html
    assert "This answer is advice" in html and ">mailflow<" not in html
