"""Issue #3: the dermatologist's review by email, the PDF consult report, the conversation."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image
from pypdf import PdfReader

from mailflow.app import App
from mailflow.config import Config
from mailflow.db.models import MessageStatus
from tests.conftest import PASSWORD, RunningService
from tests.support.cases import CASE_NUMBER, CASES, three_photos
from tests.support.cli import cli_json, run_cli
from tests.support.db import wait_final
from tests.support.images import skin_photo
from tests.support.mail import FULL_FORM, case_email, reply_to, wait_until
from tests.support.review import ANSWER, answer, open_case, pdf_of, pdf_text, send
from tests.support.sink import Delivered, RelaySink


def test_a_case_goes_to_the_dermatologist_and_the_answer_comes_back_as_a_pdf(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    dermatologists: tuple[str, str], tmp_path: Path,
) -> None:
    derm = dermatologists[0]
    number, _ack, notification = open_case(service, sink, provider, derm)
    assert cli_json(config, "cases", "show", number)["state"] == "assigned"
    text = notification.text
    assert "Jane Testpatient" in text and "anterior lower legs" in text and "Diagnosis:" in text
    photos = [p for p in notification.message.iter_attachments()
              if p.get_content_type() == "image/jpeg"]
    assert [p.get_filename() for p in photos] == [
        "1-distribution.jpg", "2-close-up-anterior-posterior.jpg", "3-close-up-oblique-lateral.jpg"]
    for part in photos:
        image = Image.open(io.BytesIO(part.get_content()))
        assert max(image.size) <= 2048 and not image.getexif()
    assert notification.message["Reply-To"].addresses[0].addr_spec.startswith(
        f"case+{number.lower()}.")

    row = answer(service, app, derm, notification, ANSWER)
    assert row.status == MessageStatus.PROCESSED and row.route == "consult"
    consult = [m for m in sink.wait_for(provider, count=2) if "consult report" in
               str(m.message["Subject"])][0]
    assert "Nummular eczema" in consult.text and "Manage in primary care" in consult.text
    report = pdf_text(pdf_of(consult))
    for words in (number, "Nummular eczema", "Triamcinolone 0.1% ointment", "Jane Testpatient",
                  "Dr Derm One"):
        assert words in report, words
    shown = cli_json(config, "cases", "show", number)
    assert shown["state"] == "reviewed"
    assert shown["consults"][0]["answer"]["diagnosis"] == "Nummular eczema"
    out = tmp_path / "printed.pdf"
    run_cli(config, "cases", "report", number, "--out", str(out))
    assert "Nummular eczema" in pdf_text(out.read_bytes())


def test_an_answer_without_a_diagnosis_is_refused_and_named(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    dermatologists: tuple[str, str],
) -> None:
    derm = dermatologists[0]
    number, _ack, notification = open_case(service, sink, provider, derm)
    row = answer(service, app, derm, notification, "Plan: emollients twice daily")
    assert row.route == "answer-incomplete"
    refusal = sink.wait_for(derm, count=2)[1]
    assert "Diagnosis" in str(refusal.message["Subject"])
    assert cli_json(config, "cases", "show", number)["state"] == "assigned"
    assert len(sink.to(provider)) == 1  # only the acknowledgement: nothing half-sent


def test_more_info_pauses_and_the_providers_reply_resumes(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    dermatologists: tuple[str, str],
) -> None:
    derm = dermatologists[0]
    number, _ack, notification = open_case(service, sink, provider, derm)
    answer(service, app, derm, notification, "More info: Is the rash itchy at night?")
    assert cli_json(config, "cases", "show", number)["state"] == "needs_info"
    question = sink.wait_for(provider, count=2)[1]
    assert "Is the rash itchy at night?" in question.text
    msg, address = reply_to(question, provider, "Yes, mostly at night.",
                            [("new-lesion.jpg", skin_photo(seed=11))])
    wait_final(app, send(service, provider, msg, address))
    assert cli_json(config, "cases", "show", number)["state"] == "assigned"
    forwarded = sink.wait_for(derm, count=2)[1]
    assert "Yes, mostly at night." in forwarded.text
    assert "Is the rash itchy" not in forwarded.text.split("Yes, mostly")[0]
    assert [p.get_filename() for p in forwarded.message.iter_attachments()] == [
        "4-additional.jpg"]
    # and the dermatologist answers from the forwarded email
    answer(service, app, derm, forwarded, ANSWER)
    assert cli_json(config, "cases", "show", number)["state"] == "reviewed"


def test_decline_reassigns_and_a_forged_answer_is_quarantined(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    dermatologists: tuple[str, str],
) -> None:
    one, two = dermatologists
    number, _ack, notification = open_case(service, sink, provider, one)
    # derm two answers on derm one's reply address: not theirs
    msg, address = reply_to(notification, two, ANSWER)
    forged = wait_final(app, send(service, two, msg, address))
    assert forged.status == MessageStatus.QUARANTINED
    assert forged.reason_code == "wrong-participant"
    told = sink.wait_for(two)[0]  # signed in: told it was held, and nothing of the case
    assert "given to someone else" in told.text and number not in told.text

    row = answer(service, app, one, notification, "Decline: conflict of interest")
    assert row.route == "decline"
    second = sink.wait_for(two, count=2)[1]
    assert number in str(second.message["Subject"])
    shown = cli_json(config, "cases", "show", number)
    assert shown["state"] == "assigned" and shown["assignee"] == two
    # derm one, no longer the assignee, tries to answer anyway
    late = answer(service, app, one, notification, ANSWER)
    assert late.status == MessageStatus.QUARANTINED and late.reason_code == "not-assignee"
    answer(service, app, two, second, ANSWER)
    assert cli_json(config, "cases", "show", number)["state"] == "reviewed"


def test_the_conversation_arrives_in_order_and_an_addendum_reissues_the_report(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    dermatologists: tuple[str, str],
) -> None:
    derm = dermatologists[0]
    number, _ack, notification = open_case(service, sink, provider, derm)
    answer(service, app, derm, notification, ANSWER)
    last_to_provider = sink.wait_for(provider, count=2)[1]
    last_to_derm = notification
    for i in range(3):
        msg, address = reply_to(last_to_provider, provider, f"Provider update {i}")
        wait_final(app, send(service, provider, msg, address))
        last_to_derm = sink.wait_for(derm, count=2 + i)[1 + i]
        assert f"Provider update {i}" in last_to_derm.text
        msg, address = reply_to(last_to_derm, derm, f"Derm advice {i}")
        wait_final(app, send(service, derm, msg, address))
        last_to_provider = sink.wait_for(provider, count=3 + i)[2 + i]
        assert f"Derm advice {i}" in last_to_provider.text
    shown = cli_json(config, "cases", "show", number)
    comments = [n["body"] for n in shown["notes"] if n["kind"] == "comment"]
    assert comments == [f"{who} {i}" for i in range(3)
                        for who in ("Provider update", "Derm advice")]
    assert shown["state"] == "follow_up"

    addendum = ANSWER.replace("Nummular eczema", "Allergic contact dermatitis")
    answer(service, app, derm, last_to_derm, addendum)
    updated = sink.wait_for(provider, count=6)[5]
    assert "addendum" in str(updated.message["Subject"]).lower()
    report = pdf_text(pdf_of(updated))
    assert "Nummular eczema" in report and "Allergic contact dermatitis" in report
    assert "addendum" in report.lower() and "Provider update 2" in report
    assert [c["version"] for c in cli_json(config, "cases", "show", number)["consults"]] == [1, 2]


def test_close_from_the_provider_and_a_later_message_reopens_as_follow_up(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    dermatologists: tuple[str, str],
) -> None:
    derm = dermatologists[0]
    number, _ack, notification = open_case(service, sink, provider, derm)
    answer(service, app, derm, notification, ANSWER)
    consult = sink.wait_for(provider, count=2)[1]
    msg, address = reply_to(consult, provider, "Thanks, all clear.\nClose")
    wait_final(app, send(service, provider, msg, address))
    assert cli_json(config, "cases", "show", number)["state"] == "closed"
    assert "closed" in str(sink.wait_for(derm, count=2)[1].message["Subject"])
    msg, address = reply_to(consult, provider, "The rash came back.")
    wait_final(app, send(service, provider, msg, address))
    assert cli_json(config, "cases", "show", number)["state"] == "follow_up"
    assert "The rash came back." in sink.wait_for(derm, count=3)[2].text


def test_a_reply_with_only_the_quoted_original_adds_nothing(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    dermatologists: tuple[str, str],
) -> None:
    derm = dermatologists[0]
    number, _ack, notification = open_case(service, sink, provider, derm)
    row = answer(service, app, derm, notification, "")
    assert row.route == "empty-reply"
    assert "no new text" in sink.wait_for(derm, count=2)[1].text
    assert cli_json(config, "cases", "show", number)["state"] == "assigned"


def reviewed_case(service: RunningService, app: App, sink: RelaySink, provider: str, derm: str,
                  form: str = FULL_FORM) -> tuple[str, Delivered, Delivered]:
    send(service, provider, case_email(provider, CASES, form, three_photos()))
    notification = sink.wait_for(derm)[0]
    number = CASE_NUMBER.search(str(notification.message["Subject"])).group(0)
    answer(service, app, derm, notification, ANSWER)
    consult = [m for m in sink.wait_for(provider, count=2)
               if "consult report" in str(m.message["Subject"])][0]
    return number, notification, consult


def test_an_idle_case_closes_itself_and_tells_both(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    dermatologists: tuple[str, str],
) -> None:
    from datetime import timedelta

    from mailflow.db.models import utcnow
    from mailflow.db.session import transaction
    from mailflow.workflow.review import close_idle

    derm = dermatologists[0]
    number, _n, _c = reviewed_case(service, app, sink, provider, derm)
    with transaction(app.sessions) as session:
        assert close_idle(app, session, now=utcnow() + timedelta(days=29)) == 0

    def one_pass() -> int:
        # A pass skips a case another process holds locked at that moment (the service is
        # still running); the next pass takes it, as the scheduler's next run would.
        with transaction(app.sessions) as session:
            return close_idle(app, session, now=utcnow() + timedelta(days=31))

    assert wait_until(one_pass, what="the idle case to close") == 1
    with transaction(app.sessions) as session:
        assert close_idle(app, session, now=utcnow() + timedelta(days=31)) == 0  # closed once
    assert cli_json(config, "cases", "show", number)["state"] == "closed"
    assert "30 days" in sink.wait_for(provider, count=3)[2].text
    assert "closed" in str(sink.wait_for(derm, count=2)[1].message["Subject"])


def test_a_providers_reports_can_be_password_protected(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    dermatologists: tuple[str, str],
) -> None:
    run_cli(config, "users", "pdf-password", provider, input="practice secret 42\n")
    _number, _n, consult = reviewed_case(service, app, sink, provider, dermatologists[0])
    reader = PdfReader(io.BytesIO(pdf_of(consult)))
    assert reader.is_encrypted
    assert reader.decrypt("wrong password") == 0
    assert reader.decrypt("practice secret 42") != 0
    assert reader.trailer["/Encrypt"]["/V"] == 5  # AES-256
    assert "Nummular eczema" in " ".join(reader.pages[0].extract_text().split()) + " ".join(
        " ".join(p.extract_text().split()) for p in reader.pages)


def test_html_only_answers_from_outlook_and_gmail_are_understood(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    dermatologists: tuple[str, str],
) -> None:
    from email.message import EmailMessage

    for style in ("outlook", "gmail"):
        send(service, provider, case_email(provider, CASES, FULL_FORM, three_photos(),
                                           subject=f"case {style}"))
    # the least-loaded dermatologist gets each case: one each
    notifications = [sink.wait_for(d)[0] for d in dermatologists]
    for style, notification, derm in zip(("outlook", "gmail"), notifications, dermatologists,
                                         strict=True):
        lines = ANSWER.strip().splitlines()
        if style == "outlook":
            html = "".join(f'<p class="MsoNormal"><b>{ln.split(":")[0]}:</b>{ln.split(":", 1)[1]}'
                           "<o:p></o:p></p>" for ln in lines)
            html += ('<div style="border-top:solid #E1E1E1 1.0pt"><p><b>From:</b> mailflow<br>'
                     "<b>Sent:</b> Monday<br><b>Subject:</b> case</p></div>"
                     f"<p>{notification.text[:400]}</p>")
        else:
            html = '<div dir="ltr">' + "<br>".join(lines) + '</div><br><div class="gmail_quote">'
            html += f"<div>On Mon, mailflow wrote:</div><blockquote>{notification.text[:400]}"
            html += "</blockquote></div>"
        msg = EmailMessage()
        address = notification.message["Reply-To"].addresses[0].addr_spec
        msg["From"], msg["To"] = derm, address
        msg["Subject"] = f"RE: {notification.message['Subject']}"
        msg["In-Reply-To"] = notification.message["Message-ID"]
        msg.set_content(f"<html><body>{html}</body></html>", subtype="html")
        row = wait_final(app, send(service, derm, msg, address))
        assert row.route == "consult", (style, row.outcome)
    assert [c["state"] for c in cli_json(config, "cases", "list")] == ["reviewed", "reviewed"]


def test_a_30_mb_reply_with_photos_is_forwarded_with_review_copies(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    dermatologists: tuple[str, str],
) -> None:
    import os

    derm = dermatologists[0]
    _number, _n, consult = reviewed_case(service, app, sink, provider, derm)
    big = []
    for i in range(3):  # noise does not compress: about 7 MB of JPEG each
        out = io.BytesIO()
        Image.frombytes("RGB", (3000, 2500), os.urandom(3000 * 2500 * 3)).save(
            out, "JPEG", quality=92)
        big.append((f"followup-{i}.jpg", out.getvalue()))
    msg, address = reply_to(consult, provider, "Two weeks later, photos attached.", big)
    assert len(msg.as_bytes()) > 28_000_000
    row = wait_final(app, send(service, provider, msg, address), timeout=90)
    assert row.status == MessageStatus.PROCESSED and row.route == "comment"
    forwarded = sink.wait_for(derm, count=2, timeout=60)[1]
    sizes = [Image.open(io.BytesIO(p.get_content())).size
             for p in forwarded.message.iter_attachments()]
    assert len(sizes) == 3 and all(max(s) <= 2048 for s in sizes)


def test_an_answer_on_one_case_naming_another_is_quarantined(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    dermatologists: tuple[str, str],
) -> None:
    derm, other = dermatologists
    for subject in ("first", "second"):
        send(service, provider, case_email(provider, CASES, FULL_FORM, three_photos(),
                                           subject=subject))
    second_number = CASE_NUMBER.search(str(sink.wait_for(other)[0].message["Subject"])).group(0)
    out = run_cli(config, "cases", "assign", second_number, "--to", derm).stdout
    assert f"{second_number} assigned to {derm}" in out
    first, second = sink.wait_for(derm, count=2)
    assert cli_json(config, "cases", "show", second_number)["assignee"] == derm
    msg, address = reply_to(first, derm, ANSWER)
    msg.replace_header("In-Reply-To", second.message["Message-ID"])  # answers the other case
    row = wait_final(app, send(service, derm, msg, address))
    assert row.status == MessageStatus.QUARANTINED and row.reason_code == "signals-disagree"
    assert [c["state"] for c in cli_json(config, "cases", "list")] == ["assigned", "assigned"]


def test_html_typed_into_the_form_is_shown_as_text_in_the_report(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    dermatologists: tuple[str, str],
) -> None:
    hostname = Path("/etc/hostname").read_text().strip() if Path("/etc/hostname").exists() else ""
    form = FULL_FORM.replace(
        "Symptoms: itch, worse at night",
        "Symptoms: <img src=\"file:///etc/hostname\"><iframe src=\"file:///etc/passwd\">"
        "</iframe><script>document.write('JS'+'RAN')</script>")
    _number, _n, consult = reviewed_case(service, app, sink, provider, dermatologists[0], form)
    report = pdf_text(pdf_of(consult))
    assert "<img src=" in report and "<script>" in report  # shown, not interpreted
    assert "JSRAN" not in report and "root:x:0:0" not in report
    if hostname and hostname not in ("localhost",):
        assert hostname not in report


def test_a_failed_render_is_recorded_and_retried_until_the_report_goes_out(
    tmp_path: Path, db_url: str, sink: RelaySink, process_pool
) -> None:
    import shutil

    from sqlalchemy import select

    from mailflow.app import initialise
    from mailflow.db.models import Consult
    from mailflow.db.session import transaction
    from mailflow.workflow import accounts
    from mailflow.workflow.report_runner import deliver_pending_reports
    from tests.conftest import DERMS, ROOT, make_config

    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    config = make_config(tmp_path, db_url, templates={"path": str(templates)},
                         outbound={"relay_host": "127.0.0.1", "relay_port": sink.port})
    initialise(config)
    app = App.open(config)
    with transaction(app.sessions) as s:
        accounts.add(s, email="doc@clinic.test", name="Dr Doc", role="provider",
                     password=PASSWORD, approved=True)
        accounts.add(s, email=DERMS[0], name="Dr Derm One", role="dermatologist",
                     password=PASSWORD, approved=True)
    running = RunningService(app, process_pool, ("smtp", "outbox")).start()  # no worker loop
    try:
        from mailflow.workflow.worker import drain

        send(running, "doc@clinic.test", case_email("doc@clinic.test", CASES, FULL_FORM,
                                                     three_photos()))
        drain(app, process_pool)
        notification = sink.wait_for(DERMS[0])[0]
        (templates / "pdf" / "consult.html.j2").rename(templates / "pdf" / "moved-away")
        msg, address = reply_to(notification, DERMS[0], ANSWER)
        send(running, DERMS[0], msg, address)
        drain(app, process_pool)
        assert deliver_pending_reports(app) == 1
        with app.sessions() as session:
            consult = session.execute(select(Consult)).scalar_one()
            assert consult.pdf_sha == "" and consult.report_attempts == 1
            assert consult.report_error
        (templates / "pdf" / "moved-away").rename(templates / "pdf" / "consult.html.j2")
        assert deliver_pending_reports(app) == 1
        report = [m for m in sink.wait_for("doc@clinic.test", count=2)
                  if "consult report" in str(m.message["Subject"])][0]
        assert "Nummular eczema" in pdf_text(pdf_of(report))
        assert deliver_pending_reports(app) == 0
    finally:
        running.stop()
        app.close()
