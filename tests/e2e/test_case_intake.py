"""A provider emails a case over SMTP and receives the acknowledgement (issue #2, done-when)."""

from __future__ import annotations

from mailflow.config import Config
from tests.conftest import PASSWORD, RunningService
from tests.support.cases import CASE_NUMBER, CASES, three_photos
from tests.support.cli import cli_json
from tests.support.images import skin_photo
from tests.support.mail import FULL_FORM, case_email, submit
from tests.support.sink import RelaySink


def test_complete_case_is_acknowledged_with_number_and_views(
    service: RunningService, sink: RelaySink, provider: str, config: Config
) -> None:
    code, text = submit(
        service.port, provider, PASSWORD, case_email(provider, CASES, FULL_FORM, three_photos())
    )
    assert code == 250, text

    ack = sink.wait_for(provider)[0]
    number = CASE_NUMBER.search(str(ack.message["Subject"])).group(0)
    assert "more needed" not in str(ack.message["Subject"])
    body = ack.text
    assert number in body
    assert "distribution" in body
    assert "close-up" in body and "oblique" in body
    assert "Please reply to this email with:" not in body
    assert ack.message["Auto-Submitted"] == "auto-replied"
    assert ack.message["Reply-To"].addresses[0].addr_spec.startswith(f"case+{number.lower()}.")

    shown = cli_json(config, "cases", "show", number)
    assert shown["state"] == "submitted"
    assert shown["fields"]["patient_name"] == "Jane Testpatient"
    assert shown["fields"]["location"].startswith("anterior lower legs")
    assert [img["view"] for img in shown["images"]][0] == "distribution"
    assert len(shown["images"]) == 3
    assert shown["missing"] == []


def test_two_photos_make_an_incomplete_case_that_the_reply_completes(
    service: RunningService, sink: RelaySink, provider: str, config: Config
) -> None:
    photos = three_photos()
    submit(service.port, provider, PASSWORD, case_email(provider, CASES, FULL_FORM, photos[:2]))
    ack = sink.wait_for(provider)[0]
    assert "more needed" in str(ack.message["Subject"])
    assert "Please reply to this email with:" in ack.text
    number = CASE_NUMBER.search(str(ack.message["Subject"])).group(0)
    assert cli_json(config, "cases", "show", number)["state"] == "incomplete"

    reply = case_email(
        provider,
        str(ack.message["Reply-To"]),
        "Here is the third photo.",
        photos[2:],
        subject=f"Re: {ack.message['Subject']}",
        headers={"In-Reply-To": ack.message["Message-ID"], "References": ack.message["Message-ID"]},
    )
    code, _ = submit(
        service.port,
        provider,
        PASSWORD,
        reply,
        rcpt=[ack.message["Reply-To"].addresses[0].addr_spec],
    )
    assert code == 250
    second = sink.wait_for(provider, count=2)[1]
    assert "now complete" in second.text
    shown = cli_json(config, "cases", "show", number)
    assert shown["state"] == "submitted"
    assert len(shown["images"]) == 3


def test_no_patient_name_at_rest_or_in_the_logs(
    service: RunningService, sink: RelaySink, provider: str, config: Config, caplog
) -> None:
    import logging

    caplog.set_level(logging.INFO)
    submit(service.port, provider, PASSWORD, case_email(provider, CASES, FULL_FORM, three_photos()))
    sink.wait_for(provider)
    needle = b"Testpatient"
    storage = config.storage_dir
    leaks = [
        p
        for p in storage.rglob("*")
        if p.is_file() and "outgoing" not in p.parts and needle in p.read_bytes()
    ]
    assert leaks == []  # blobs and keys (the database and the review path: test_phi_at_rest.py)
    if config.database_url.startswith("postgresql"):
        from sqlalchemy import create_engine, text

        engine = create_engine(config.database_url)
        with engine.connect() as conn:
            dump = " ".join(
                str(r)
                for t in ("patients", "cases", "case_images", "case_notes")
                for r in conn.execute(text(f"select * from {t}"))
            )
        engine.dispose()
        assert "Testpatient" not in dump
    assert "Testpatient" not in caplog.text


def test_photos_are_stored_encrypted_and_every_derived_copy_is_exif_free(
    service: RunningService, sink: RelaySink, provider: str, config: Config, app
) -> None:
    import io

    import pillow_heif
    from PIL import Image
    from sqlalchemy import select

    from mailflow.db.models import CaseImage
    from tests.support.images import gps_exif

    heic = io.BytesIO()
    pillow_heif.from_pillow(Image.open(io.BytesIO(skin_photo(seed=9)))).save(heic, quality=80)
    photos = [("distribution.jpg", skin_photo(seed=7, exif=gps_exif())),
              ("closeup.heic", heic.getvalue()),
              ("oblique.jpg", skin_photo(seed=8, exif=gps_exif()))]
    submit(service.port, provider, PASSWORD, case_email(provider, CASES, FULL_FORM, photos))
    ack = sink.wait_for(provider)[0]
    assert "Please reply to this email with:" not in ack.text
    with app.sessions() as session:
        images = session.execute(select(CaseImage).order_by(CaseImage.position)).scalars().all()
    assert [i.format for i in images] == ["jpeg", "heif", "jpeg"]
    for image, (_name, sent) in zip(images, photos, strict=True):
        assert app.blobs.get(image.original_sha) == sent  # the original, as received
        for sha in (image.clean_sha, image.thumbnail_sha):
            data = app.blobs.get(sha)
            assert b"Exif\x00\x00" not in data and b"TestCam" not in data
            assert not Image.open(io.BytesIO(data)).getexif()
        blob_file = next(config.storage_dir.joinpath("blobs").rglob(image.original_sha))
        assert blob_file.read_bytes()[:64] != sent[:64]  # encrypted on disk


def test_an_html_only_form_from_outlook_is_understood(
    service: RunningService, sink: RelaySink, provider: str, config: Config
) -> None:
    from email.message import EmailMessage

    html = "".join(f"<p><b>{line.split(':', 1)[0]}:</b>{line.split(':', 1)[1]}</p>"
                   for line in FULL_FORM.strip().splitlines())
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = provider, CASES, "consult"
    msg["Message-ID"] = "<outlook-html-only@clinic.test>"  # Outlook always sends one
    msg.set_content(f"<html><body>{html}</body></html>", subtype="html")
    for name, data in three_photos():
        msg.add_attachment(data, maintype="image", subtype="jpeg", filename=name)
    submit(service.port, provider, PASSWORD, msg)
    ack = sink.wait_for(provider)[0]
    assert ack.message["In-Reply-To"] == "<outlook-html-only@clinic.test>"
    number = CASE_NUMBER.search(str(ack.message["Subject"])).group(0)
    shown = cli_json(config, "cases", "show", number)
    assert shown["state"] == "submitted"
    assert shown["fields"]["duration"] == "3 months"
