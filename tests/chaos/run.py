"""Chaos (issue #13 item 3): cases sent over SMTP by several clients to two nodes on one
PostgreSQL database while, at random moments, `kill -9` hits a worker, a scheduler, an smtpd or
the bus (each restarted at once). Then the promises are checked:

- every message that got `250` ends as exactly one case or quarantine entry;
- every message that was sent (acknowledgements, notifications, SLA mail) reached the relay
  exactly once; the one exception SMTP cannot rule out is counted apart: a worker killed in
  the instant between the relay's 250 and the commit that records it, whose message is sent
  again byte for byte (same Message-ID);
- no SLA warning or breach was given twice;
- `mailflow audit verify` passes.

`make chaos` runs 500 cases and prints the summary table; tests/chaos/test_chaos.py runs 60 in
`make test`. The randomness is seeded (`--seed`; printed) so a failing run can be repeated.

    MAILFLOW_TEST_POSTGRES_URL=postgresql+psycopg://... python -m tests.chaos.run --cases 500
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select

from mailflow.app import App
from mailflow.db.models import (
    AuditEvent,
    Case,
    InboundMessage,
    MessageStatus,
    OutboundMessage,
    OutboxStatus,
    SlaEvent,
)
from mailflow.db.session import transaction
from mailflow.workflow import accounts
from tests.conftest import DERMS, PASSWORD, PG_URL, ROOT, MigratedTemplates, write_schedules
from tests.support.cases import CASES
from tests.support.images import skin_photo
from tests.support.mail import FULL_FORM, case_email, client_context
from tests.support.nodes import Node, nodes, postgres_database, start_all, stop_all
from tests.support.sink import Delivered, RelaySink

TARGETS = ("worker", "scheduler", "smtpd", "bus")
FINAL = (MessageStatus.PROCESSED, MessageStatus.QUARANTINED, MessageStatus.DUPLICATE)
ACKS = ("ack", "ack_incomplete")
ADMIN = "admin@derm.localhost"
PHOTO_SEEDS = 8  # photos are drawn from a few, so making them costs little
# from the relay's 250 to the commit of "sent": milliseconds, up to seconds on a loaded machine
MID_DELIVERY = 2.0


@dataclass
class Sent:
    """One case a client sends, and what became of each try (a client sends it again, the
    same bytes, after a dropped connection or a 4xx, as a mail client does)."""

    index: int
    provider: str
    raw: bytes
    accepted: list[int] = field(default_factory=list)  # message ids answered 250
    tries: int = 0
    refused: str = ""  # a 5xx: given up


@dataclass
class Result:
    seed: int
    cases: int
    clients: int
    sent: list[Sent]
    kills: Counter[str]
    seconds: float
    counts: dict[str, int]
    problems: list[str]

    def table(self) -> str:
        rows = [
            ("seed", self.seed), ("cases sent", self.cases), ("clients", self.clients),
            ("SMTP tries", sum(s.tries for s in self.sent)),
            ("250s", sum(len(s.accepted) for s in self.sent)),
            *self.counts.items(),
            *((f"kill -9 {role}", self.kills[role]) for role in TARGETS),
            ("problems", len(self.problems)), ("seconds", f"{self.seconds:.1f}"),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [f"{name:<{width}}  {value}" for name, value in rows]
        return "\n".join(["chaos summary", "-" * (width + 10), *lines, *self.problems])


def chaos_schedules(folder: Path) -> Path:
    """Open around the clock, and a routine case's promise in one minute: warnings and
    breaches fire during the run, while schedulers are being killed."""
    schedules = write_schedules(folder)
    calendar = (ROOT / "schedules" / "calendar.toml").read_text()
    hours = "\n".join(f'{day} = ["00:00-24:00"]'
                      for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"))
    calendar = re.sub(r"\[hours\]\n(?:\w+ = .*\n)+", f"[hours]\n{hours}\n", calendar)
    (schedules / "calendar.toml").write_text(calendar)
    sla = (ROOT / "schedules" / "sla.toml").read_text()
    sla = re.sub(r"(\[policy\.routine\]\n)target_minutes = \d+\nwarnings = \[[^]]*\]",
                 r"\1target_minutes = 1\nwarnings = [0.2, 0.5]", sla)
    (schedules / "sla.toml").write_text(sla)
    return schedules


def make_cases(rnd: random.Random, count: int, providers: list[str]) -> list[Sent]:
    photos = [skin_photo(width=800, height=600, seed=s) for s in range(PHOTO_SEEDS)]
    made = []
    for i in range(count):
        provider = providers[i % len(providers)]
        form = FULL_FORM.replace("MRN-0001", f"MRN-{i:05d}")  # each message its own
        chosen = [(f"photo{n}.jpg", rnd.choice(photos)) for n in range(rnd.randint(1, 3))]
        raw = case_email(provider, CASES, form, chosen).as_bytes()
        made.append(Sent(i, provider, re.sub(rb"(?<!\r)\n", b"\r\n", raw)))
    return made


def send(case: Sent, port: int) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
        smtp.ehlo("client.test")
        smtp.starttls(context=client_context())
        smtp.ehlo("client.test")
        smtp.login(case.provider, PASSWORD)
        code, text = smtp.mail(case.provider)
        if code == 250:
            code, text = smtp.rcpt(CASES)
        if code in (250, 251):
            code, text = smtp.data(case.raw)
        return code, text


def client(cases: list[Sent], made: list[Node], rnd: random.Random, deadline: float,
           think: float) -> None:
    """Send each case until a 250 (or a 5xx), to either node's door, as a mail client would."""
    for case in cases:
        while time.monotonic() < deadline:
            node = rnd.choice(made)
            case.tries += 1
            try:
                code, text = send(case, node.smtp_port)
            except (OSError, smtplib.SMTPException):
                code, text = 0, b"connection lost"  # the door was killed: try again
            if code == 250:
                case.accepted.append(int(text.decode().rsplit(" ", 1)[1]))
                time.sleep(rnd.uniform(0, 2 * think))  # a client's pace, not a flood
                break
            if code >= 500:
                case.refused = f"{code} {text.decode(errors='replace')}"
                break
            time.sleep(rnd.uniform(0.05, 0.3))


class Monkey:
    """kill -9 a random part at random moments, restarting it at once."""

    def __init__(self, made: list[Node], rnd: random.Random, pause: tuple[float, float]) -> None:
        self.made = made
        self.rnd = rnd
        self.pause = pause
        self.kills: Counter[str] = Counter()
        self.when: list[tuple[float, str]] = []  # (time.monotonic(), role) of each kill
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._run, name="chaos", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            while not (self.halt.is_set() and set(self.kills) == set(TARGETS)):
                time.sleep(self.rnd.uniform(*self.pause))
                spared = [t for t in TARGETS if t not in self.kills]  # each kind at least once
                role = self.rnd.choice(spared or TARGETS)
                node = self.made[0] if role == "bus" else self.rnd.choice(self.made)
                node.kill(role)
                self.when.append((time.monotonic(), role))
                self.kills[role] += 1
                node.start(role)
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def stop(self) -> None:
        """After each kind of part was killed at least once."""
        self.halt.set()
        self.thread.join(300)
        if self.error is not None:
            raise self.error


def settled(app: App) -> bool:
    with app.sessions() as session:
        waiting = session.scalar(select(func.count()).select_from(InboundMessage).where(
            InboundMessage.status.not_in(FINAL)))
        unsent = session.scalar(select(func.count()).select_from(OutboundMessage).where(
            OutboundMessage.status != OutboxStatus.SENT))
    return waiting == 0 and unsent == 0


def cut_off(copies: list[Delivered], kills: list[tuple[float, str]]) -> bool:
    """A second copy SMTP cannot prevent: a worker killed between the relay taking the message
    and the record that it was sent (README, *After a crash*): byte for byte the same, and a
    worker was killed right after the first copy arrived."""
    first, second = sorted(copies, key=lambda d: d.at)
    return first.raw == second.raw and any(
        role == "worker" and first.at <= at <= min(second.at, first.at + MID_DELIVERY)
        for at, role in kills)


def check(app: App, sent: list[Sent], sink: RelaySink, kills: list[tuple[float, str]],
          config_path: Path, env: dict[str, str]) -> tuple[dict[str, int], list[str]]:
    problems: list[str] = []
    with app.sessions() as session:
        inbound = {m.id: m for m in session.scalars(select(InboundMessage))}
        outbound = list(session.scalars(select(OutboundMessage)))
        cases = session.scalar(select(func.count()).select_from(Case)) or 0
        sla_twice = session.execute(
            select(SlaEvent.case_id, SlaEvent.once, func.count()).where(SlaEvent.once.is_not(None))
            .group_by(SlaEvent.case_id, SlaEvent.once).having(func.count() > 1)).all()
        sla_audit = [(e.case_id, e.action, str(e.detail.get("kind"))) for e in session.scalars(
            select(AuditEvent).where(AuditEvent.action.in_(("sla.warning", "sla.breach"))))]
    for case in sent:
        if case.refused or not case.accepted:
            problems.append(f"case {case.index}: never accepted ({case.refused or 'gave up'})")
            continue
        rows = [inbound.get(i) for i in case.accepted]
        if any(r is None for r in rows):
            problems.append(f"case {case.index}: a 250 without its message {case.accepted}")
            continue
        outcomes = [r for r in rows if r is not None and r.status != MessageStatus.DUPLICATE]
        # the tries of one case that were spooled: one case or quarantine entry, the rest
        # duplicates of it (a try whose 250 was lost to a kill is one of the spooled ones)
        spooled = [m for m in inbound.values() if m.fingerprint == rows[0].fingerprint]
        firsts = [m for m in spooled if m.status != MessageStatus.DUPLICATE]
        if len(firsts) != 1 or firsts[0].status not in (MessageStatus.PROCESSED,
                                                        MessageStatus.QUARANTINED):
            problems.append(f"case {case.index}: messages {[m.id for m in spooled]} ended "
                            f"{[m.status for m in spooled]}")
        elif outcomes and outcomes[0].id != firsts[0].id:
            problems.append(f"case {case.index}: two outcomes {outcomes[0].id}, {firsts[0].id}")
    stuck = [m.id for m in inbound.values() if m.status not in FINAL]
    if stuck:
        problems.append(f"messages never finished: {stuck}")
    case_ids = [m.case_id for m in inbound.values()
                if m.status == MessageStatus.PROCESSED and m.route == "new-case"]
    if len(case_ids) != len(set(case_ids)):
        problems.append("two messages opened the same case")
    at_sink: dict[str, list[Delivered]] = {}
    for delivered in list(sink.messages):
        at_sink.setdefault(str(delivered.message["Message-ID"]), []).append(delivered)
    resent = 0
    for row in outbound:
        copies = at_sink.get(row.message_id, [])
        if len(copies) == 2 and cut_off(copies, kills):
            resent += 1
        elif row.status != OutboxStatus.SENT or len(copies) != 1:
            problems.append(f"outbound {row.id} ({row.kind}): {row.status}, {len(copies)} "
                            f"copies at the relay, {row.attempts} attempts")
    acks_per_case = Counter(r.case_id for r in outbound if r.kind in ACKS)
    twice = [c for c, n in acks_per_case.items() if n > 1]
    if twice:
        problems.append(f"cases acknowledged twice: {twice}")
    for case_id, once, count in sla_twice:
        problems.append(f"SLA {once} given {count} times on case {case_id}")
    for (case_id, action, kind), count in Counter(sla_audit).items():
        if count > 1:
            problems.append(f"{action} {kind} audited {count} times on case {case_id}")
    verify = subprocess.run(
        [sys.executable, "-m", "mailflow", "--config", str(config_path), "audit", "verify"],
        env=env, capture_output=True, text=True, check=False)
    if verify.returncode != 0:
        problems.append(f"mailflow audit verify: {verify.stdout.strip()} {verify.stderr[-500:]}")
    statuses = Counter(m.status for m in inbound.values())
    counts = {
        "messages spooled": len(inbound),
        "cases": cases,
        "quarantined": statuses[MessageStatus.QUARANTINED],
        "duplicates (a lost 250, sent again)": statuses[MessageStatus.DUPLICATE],
        "acks sent": sum(1 for r in outbound if r.kind in ACKS),
        "mail sent (all kinds)": len(outbound),
        "copies at the relay": sum(len(c) for c in at_sink.values()),
        "sent twice: kill -9 mid-delivery": resent,
        "SLA warnings and breaches": len(sla_audit),
    }
    return counts, problems


def people(app: App, providers: int) -> list[str]:
    emails = [f"dr.client{n}@clinic.test" for n in range(providers)]
    with transaction(app.sessions) as session:
        for email in emails:
            accounts.add(session, email=email, name="Dr Chaos Client", role="provider",
                         password=PASSWORD, approved=True, license_state="NY")
        accounts.add(session, email=ADMIN, name="Ada Admin", role="admin", password=PASSWORD,
                     approved=True)
        for i, email in enumerate(DERMS):
            accounts.add(session, email=email, name=f"Dr Derm {i + 1}", role="dermatologist",
                         password=PASSWORD, approved=True, credentials="MD, FAAD")
    return emails


def run(cases: int, clients: int, seed: int, folder: Path, pause: tuple[float, float],
        templates: MigratedTemplates, think: float = 0.5, log: bool = True) -> Result:
    """`think`: a client's mean pause between two cases (seconds)."""
    rnd = random.Random(seed)
    if log:
        print(f"chaos: {cases} cases, {clients} clients, seed {seed}", flush=True)
    started = time.monotonic()
    phases: dict[str, float] = {}
    sink = RelaySink()
    sink.start()
    try:
        with postgres_database(templates) as url, nodes(
                folder, url, sink,
                schedules={"path": str(chaos_schedules(folder))},
                intake={"workers": 1, "retry_backoff_seconds": [1, 2, 4, 8]},
                smtp={"rate_per_minute": 100_000}) as (made, app):
            providers = people(app, clients)
            sent = make_cases(rnd, cases, providers)
            start_all(made)
            phases["start"] = time.monotonic() - started
            deadline = time.monotonic() + 60 + cases * 2
            threads = [threading.Thread(target=client, args=(
                sent[n::clients], made, random.Random(seed + 1 + n), deadline, think))
                for n in range(clients)]
            monkey = Monkey(made, random.Random(seed - 1), pause)
            monkey.thread.start()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            monkey.stop()
            for node in made:  # everything back up (a kill's restart is done by now)
                for role in node.procs:
                    assert node.running(role), f"{node.name} {role} is not running"
            phases["send"] = time.monotonic() - started - sum(phases.values())
            # the schedulers stop first (SIGTERM): no new SLA mail while the outbox is checked
            stubborn = stop_all(made, ("scheduler",))
            phases["stop schedulers"] = time.monotonic() - started - sum(phases.values())
            wait = time.monotonic() + 60 + cases * 0.5
            while not settled(app) and time.monotonic() < wait:
                time.sleep(0.5)
            time.sleep(1)  # a last copy the relay might still be taking
            phases["settle"] = time.monotonic() - started - sum(phases.values())
            counts, problems = check(app, sent, sink, monkey.when,
                                     made[0].folder / "config.toml", made[0].env)
            problems += stubborn
    finally:
        sink.stop()
    counts.update({f"seconds: {name}": round(value) for name, value in phases.items()})
    result = Result(seed, cases, clients, sent, monkey.kills, time.monotonic() - started,
                    counts, problems)
    if log:
        print(result.table(), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--pause", type=float, nargs=2, default=(1.0, 4.0),
                        help="seconds between kills: a random time between the two")
    parser.add_argument("--keep", action="store_true", help="keep the nodes' folders and logs")
    args = parser.parse_args(argv)
    if not PG_URL:
        print("chaos: set MAILFLOW_TEST_POSTGRES_URL (two nodes share one PostgreSQL database)",
              file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    folder = Path(tempfile.mkdtemp(prefix="mailflow-chaos-"))
    templates = MigratedTemplates(folder / "templates")
    (folder / "templates").mkdir()
    try:
        result = run(args.cases, args.clients, seed, folder, tuple(args.pause), templates)
    finally:
        templates.drop()
        if args.keep:
            print(f"chaos: logs in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
