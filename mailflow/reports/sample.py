"""Synthetic consult reports (invented patient, drawn photos) for tests, benchmarks and demos."""

from __future__ import annotations

import io
import random
from datetime import UTC, datetime, timedelta

from PIL import Image, ImageDraw, ImageFilter

from mailflow.reports.model import ConsultReport, ReportAddendum, ReportComment, ReportPhoto


def synthetic_jpeg(width: int = 1600, height: int = 1200, seed: int = 1) -> bytes:
    """A skin-toned picture with a blotchy 'lesion' and a ruler: looks like a clinical photo
    at a glance and compresses like one (texture, not flat colour)."""
    rnd = random.Random(seed)
    im = Image.new("RGB", (width, height), (214, 168, 146))
    draw = ImageDraw.Draw(im)
    for _ in range(width * height // 900):  # skin texture
        x, y = rnd.randrange(width), rnd.randrange(height)
        r = rnd.randrange(2, 7)
        shade = rnd.randrange(-18, 18)
        draw.ellipse((x, y, x + r, y + r), fill=(214 + shade, 168 + shade, 146 + shade))
    cx, cy = width // 2 + rnd.randrange(-80, 80), height // 2 + rnd.randrange(-60, 60)
    for _ in range(60):  # the lesion: overlapping reddish patches
        rx, ry = rnd.randrange(40, width // 6), rnd.randrange(30, height // 6)
        ox, oy = rnd.randrange(-120, 120), rnd.randrange(-90, 90)
        tone = (rnd.randrange(150, 200), rnd.randrange(70, 110), rnd.randrange(70, 100))
        draw.ellipse((cx + ox - rx, cy + oy - ry, cx + ox + rx, cy + oy + ry), fill=tone)
    im = im.filter(ImageFilter.GaussianBlur(2))
    draw = ImageDraw.Draw(im)
    top = height - height // 10  # a mm ruler along the bottom
    draw.rectangle((width // 12, top, width // 12 + width // 3, top + height // 24), fill="white")
    for i in range(0, width // 3, max(width // 150, 2)):
        tick = height // 40 if i % (max(width // 150, 2) * 10) == 0 else height // 80
        x = width // 12 + i
        draw.line((x, top, x, top + tick), fill="black", width=2)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return buf.getvalue()


_EASTERN_NOV = datetime(2026, 11, 2, 15, 5, tzinfo=UTC)  # Mon 2 Nov 2026, 10:05 EST


def sample_report(
    *,
    photos: int = 3,
    photo_size: tuple[int, int] = (1600, 1200),
    addenda: bool = False,
    comments: bool = False,
    **overrides: object,
) -> ConsultReport:
    views = [
        ("distribution", "Left forearm, whole area, flexor side"),
        ("close-up (anterior/posterior)", "Largest plaque, ruler in view"),
        ("close-up (oblique/lateral)", "Same plaque, side light"),
        ("additional", "Older lesion near the elbow"),
    ]
    shots = tuple(
        ReportPhoto(
            position=i + 1,
            view=views[i % len(views)][0],
            caption=views[i % len(views)][1],
            jpeg=synthetic_jpeg(*photo_size, seed=i + 1),
            warnings=("Slightly soft focus; a closer, sharper shot would help",) if i == 2 else (),
        )
        for i in range(photos)
    )
    received = _EASTERN_NOV
    answered = received + timedelta(hours=1, minutes=12)
    fields: dict[str, object] = dict(
        case_number="DERM-2026-000123",
        issued_at=answered + timedelta(minutes=1),
        timezone="America/New_York",
        patient_name="Jane Testpatient",
        date_of_birth="1984-03-14",
        sex="Female",
        mrn="TEST-0042",
        provider_name="Dr Alex Referrer",
        provider_practice="Maple Street Family Practice",
        provider_email="alex.referrer@clinic.example",
        dermatologist_name="Dr Morgan Skinner",
        dermatologist_credentials="MD, FAAD; board-certified dermatologist",
        received_at=received,
        answered_at=answered,
        sla_met=True,
        sla_text="Reviewed within 1 h 12 min of business time (target 2 h)",
        urgency="routine",
        history=(
            ("Reason for referral / question",
             "Itchy coin-shaped plaques on the left forearm for 6 weeks. Eczema or tinea?"),
            ("Location on body", "Left forearm, flexor side"),
            ("Duration", "6 weeks"),
            ("Symptoms", "Itch, worse at night; no bleeding"),
            ("Evolution", "Two new plaques in the last 2 weeks; no colour change"),
            ("Treatments tried", "Hydrocortisone 1% cream for 10 days, little response"),
            ("Current medications", "Levothyroxine 50 mcg"),
            ("Allergies", "None known"),
            ("Past medical history", "Hypothyroidism; childhood atopic dermatitis"),
            ("Family history of skin cancer", "No"),
            ("Fitzpatrick skin type", "III"),
            ("Pregnant or nursing", "No"),
            ("Immunosuppressed", "No"),
            ("Consent to photos", "Yes"),
        ),
        photos=shots,
        diagnosis="Nummular eczema",
        differential="Tinea corporis; plaque psoriasis; contact dermatitis",
        plan=(
            "Triamcinolone 0.1% ointment twice daily to the plaques for 2 weeks, then as "
            "needed.\nEmollient (petrolatum-based) at least twice daily to the whole arm.\n"
            "Avoid hot showers and fragranced soaps."
        ),
        tests="No. KOH scraping if there is no response in 2 weeks.",
        icd10="L30.0",
        next_step="Manage in primary care",
        follow_up="4 weeks; re-refer if not improving",
        image_quality="adequate with suggestions",
    )
    if addenda:
        fields["addenda"] = (
            ReportAddendum(
                at=answered + timedelta(days=1, hours=2),
                author="Dr Morgan Skinner",
                text="Tests: KOH scraping now, before starting the steroid\nFollow-up: 3 weeks",
                title="Addendum 1",
            ),
        )
    if comments:
        fields["comments"] = (
            ReportComment(
                at=received + timedelta(minutes=30),
                author="Dr Morgan Skinner",
                role="dermatologist",
                body="Has she used any new soaps or creams on that arm?",
                kind="question",
            ),
            ReportComment(
                at=received + timedelta(minutes=50),
                author="Dr Alex Referrer",
                role="provider",
                body="No new products. She gardens most weekends.",
                kind="answer_to_question",
            ),
            ReportComment(
                at=answered + timedelta(hours=3),
                author="Dr Alex Referrer",
                role="provider",
                body="Thanks. Should she stop the hydrocortisone?\nShe also asks about swimming.",
            ),
            ReportComment(
                at=answered + timedelta(hours=4),
                author="Dr Morgan Skinner",
                role="dermatologist",
                body="Yes, stop it while on triamcinolone. Swimming is fine; rinse and "
                "moisturise afterwards.",
            ),
        )
    fields.update(overrides)
    return ConsultReport(**fields)  # type: ignore[arg-type]
