"""Peak memory of the analysis process on a photo-heavy message, with and without the
per-message pixel budget ([intake] max_pixels_per_message; issue #11: twelve PNGs of
7,700 × 7,700 px drove a worker to 608 MB).

Each run is a fresh Python process doing what a pool process does for one message
(parse.analyze: MIME, every photo decoded, cleaned, shrunk), and reports its peak RSS
(ru_maxrss): with and without the budget, and with and without the gate that lets photos
decode side by side only while their pixels together fit one largest-allowed photo
(parse/budget.py). The PNGs are one colour each: a 59 MP photo in ~170 KB, as in the incident, and
decoding costs the same memory whatever the pixels hold.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tempfile
from email.message import EmailMessage
from pathlib import Path

from PIL import Image

from benchmarks.machine import describe
from mailflow.parse.types import ImageLimits

SIDE = 7700
PHOTOS = 12
UNBOUNDED = 10**15

_CHILD = """
import resource, sys, time
from mailflow.parse import budget
from mailflow.parse.analyze import analyze
from mailflow.parse.types import ImageLimits, MimeLimits
if sys.argv[3] == "no-gate":  # as before the gate: photos decode side by side regardless
    class Open(budget.PixelGate):
        def __init__(self, limit): super().__init__(10**15)
    budget.PixelGate = Open
raw = open(sys.argv[1], "rb").read()
started = time.monotonic()
result = analyze(raw, "dr.bench@clinic.test", MimeLimits(),
                 ImageLimits(max_pixels_per_message=int(sys.argv[2])))
seconds = time.monotonic() - started
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{peak_mb:.0f} {seconds:.1f} {len(result.photos)} {len(result.refused)}")
"""


def _message(photos: int) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "dr.bench@clinic.test", "cases@x.test", "photos"
    msg.set_content("Patient name: Bench Patient\nReason for referral: rash\n")
    for i in range(photos):
        out = io.BytesIO()
        Image.new("RGB", (SIDE, SIDE), (200, 150, 90 + i)).save(out, "PNG")
        msg.add_attachment(out.getvalue(), maintype="image", subtype="png",
                           filename=f"photo_{i + 1}.png")
    return msg.as_bytes()


def _measure(path: Path, budget: int, gate: str) -> tuple[float, float, int, int]:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(budget), gate],
                         check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), float(out[1]), int(out[2]), int(out[3])


def run(quick: bool) -> None:
    print(describe())
    photos = 4 if quick else PHOTOS
    raw = _message(photos)
    budget = ImageLimits().max_pixels_per_message
    print(f"message: {photos} PNGs of {SIDE}×{SIDE} px ({photos * SIDE * SIDE / 1e6:.0f} MP), "
          f"{len(raw) / 1e6:.1f} MB")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "message.eml"
        path.write_bytes(raw)
        for label, limit, gate in (
            ("no budget, no gate", UNBOUNDED, "no-gate"),
            (f"budget {budget / 1e6:.0f} MP, no gate", budget, "no-gate"),
            ("no budget, gate", UNBOUNDED, "gate"),
            (f"budget {budget / 1e6:.0f} MP + gate (shipped)", budget, "gate"),
        ):
            peak, seconds, taken, refused = _measure(path, limit, gate)
            print(f"  {label:<30} peak RSS {peak:6.0f} MB  {seconds:5.1f} s  "
                  f"{taken} photos taken, {refused} refused", flush=True)
