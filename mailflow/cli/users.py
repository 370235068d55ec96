"""mailflow users add|list|approve|reject|resend-link|pdf-password|totp|cert"""

from __future__ import annotations

import argparse
import sys

from mailflow.app import App
from mailflow.cli.cases import CliError
from mailflow.cli.output import emit
from mailflow.db.models import Account, Role
from mailflow.db.session import transaction
from mailflow.db.smime_models import CertSource, ProviderCertificate
from mailflow.trust import totp
from mailflow.workflow import accounts, certificates, registration


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    users = sub.add_parser("users", help="accounts: providers, dermatologists, admins")
    cmds = users.add_subparsers(dest="action", required=True)
    add = cmds.add_parser("add", help="add an account")
    add.add_argument("--role", required=True, choices=Role.ALL)
    add.add_argument("--email", required=True)
    add.add_argument("--name", required=True)
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.add_argument("--approved", action="store_true", help="approve at once")
    for opt in ("practice", "npi", "phone", "license-state", "credentials"):
        add.add_argument(f"--{opt}", default="")
    add.add_argument("--json", action="store_true")
    add.set_defaults(handler=cmd_add)
    lst = cmds.add_parser("list", help="list accounts")
    lst.add_argument("--role", choices=Role.ALL)
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=cmd_list)
    pdfpw = cmds.add_parser(
        "pdf-password", help="protect a provider's reports with a password (AES-256), from stdin"
    )
    pdfpw.add_argument("email", metavar="EMAIL")
    pdfpw.add_argument("--remove", action="store_true", help="send reports unprotected again")
    pdfpw.set_defaults(handler=cmd_pdf_password)
    second = cmds.add_parser(
        "totp", help="turn on the authenticator step for web sign-in (prints the key to scan)"
    )
    second.add_argument("email", metavar="EMAIL")
    second.add_argument("--remove", action="store_true",
                        help="turn it off (a lost phone): the password alone signs in again")
    second.set_defaults(handler=cmd_totp)
    approve = cmds.add_parser("approve", help="approve pending accounts")
    approve.add_argument("emails", nargs="+", metavar="EMAIL")
    approve.add_argument("--json", action="store_true")
    approve.set_defaults(handler=cmd_approve)
    reject = cmds.add_parser("reject", help="reject a pending registration (nothing is emailed)")
    reject.add_argument("email", metavar="EMAIL")
    reject.add_argument("--reason", required=True, help="why; kept in the audit log")
    reject.add_argument("--json", action="store_true")
    reject.set_defaults(handler=cmd_reject)
    resend = cmds.add_parser(
        "resend-link", help="email an approved provider a new link to set their password"
    )
    resend.add_argument("email", metavar="EMAIL")
    resend.add_argument("--json", action="store_true")
    resend.set_defaults(handler=cmd_resend_link)
    cert = cmds.add_parser(
        "cert", help="S/MIME certificates: list, add (approved), approve or revoke one")
    cert.add_argument("email", metavar="EMAIL")
    what = cert.add_mutually_exclusive_group()
    what.add_argument("--file", help="add this certificate (PEM or DER), approved")
    what.add_argument("--approve", metavar="FINGERPRINT", help="approve an offered certificate")
    what.add_argument("--revoke", metavar="FINGERPRINT", help="never encrypt to it again")
    cert.add_argument("--json", action="store_true")
    cert.set_defaults(handler=cmd_cert)


def as_dict(a: Account) -> dict[str, object]:
    return {
        "id": a.id,
        "email": a.email,
        "name": a.name,
        "role": a.role,
        "status": a.status,
        "practice": a.practice,
        "npi": a.npi,
        "license_state": a.license_state,
        "credentials": a.credentials,
        "has_password": bool(a.password_hash),
        "created_at": a.created_at,
        "approved_at": a.approved_at,
    }


def cmd_add(app: App, args: argparse.Namespace) -> int:
    password = None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    with transaction(app.sessions) as session:
        account = accounts.add(
            session,
            email=args.email,
            name=args.name,
            role=args.role,
            password=password,
            approved=args.approved,
            practice=args.practice,
            npi=args.npi,
            phone=args.phone,
            license_state=args.license_state.upper(),
            credentials=args.credentials,
        )
        row = as_dict(account)
    emit([row], args.json, ["id", "email", "role", "status"], "")
    return 0


def cmd_list(app: App, args: argparse.Namespace) -> int:
    with app.sessions() as session:
        rows = [as_dict(a) for a in accounts.list_accounts(session, args.role)]
    emit(rows, args.json, ["id", "email", "name", "role", "status"], "no accounts")
    return 0


def cmd_approve(app: App, args: argparse.Namespace) -> int:
    rows = []
    with transaction(app.sessions) as session:
        for email in args.emails:
            account, changed = registration.approve(app, session, email, actor="cli")
            rows.append({**as_dict(account), "already_approved": not changed})
    for row in rows:
        if row["already_approved"] and not args.json:
            print(f"{row['email']} was already approved: nothing was sent again",
                  file=sys.stderr)
    emit(rows, args.json, ["id", "email", "role", "status"], "")
    return 0


def cmd_reject(app: App, args: argparse.Namespace) -> int:
    with transaction(app.sessions) as session:
        row = as_dict(registration.reject(session, args.email, "cli", args.reason))
    emit([row], args.json, ["id", "email", "role", "status"], "")
    return 0


def cmd_resend_link(app: App, args: argparse.Namespace) -> int:
    with transaction(app.sessions) as session:
        row = as_dict(registration.resend_link(app, session, args.email, actor="cli"))
    if not args.json:
        print(f"a new link to set the password is on its way to {row['email']}")
    emit([row], args.json, ["id", "email", "role", "status"], "")
    return 0


def cmd_pdf_password(app: App, args: argparse.Namespace) -> int:
    password = None if args.remove else sys.stdin.readline().rstrip("\r\n")
    with transaction(app.sessions) as session:
        accounts.set_pdf_password(session, args.email, password)
    print(f"reports for {args.email} are " + ("unprotected" if args.remove else "protected"))
    return 0


def cmd_totp(app: App, args: argparse.Namespace) -> int:
    secret = None if args.remove else totp.new_secret()
    with transaction(app.sessions) as session:
        accounts.set_totp(session, args.email, secret)
    if secret is None:
        print(f"the authenticator step is off for {args.email}")
        return 0
    print(f"the authenticator step is on for {args.email}: add this to their app")
    print(f"  key: {totp.grouped(secret)}")
    print(f"  or open: {totp.provisioning_uri(secret, args.email, app.config.mail.domain)}")
    print("(or let them set it up themselves, signed in, on the Your account page)")
    return 0


def cert_dict(c: ProviderCertificate) -> dict[str, object]:
    return {"fingerprint": c.fingerprint, "email": c.email, "status": c.status,
            "source": c.source, "issuer": c.issuer, "not_after": c.not_after,
            "added_at": c.added_at, "decided_by": c.decided_by}


def cmd_cert(app: App, args: argparse.Namespace) -> int:
    with transaction(app.sessions) as session:
        account = accounts.find(session, args.email)
        if account is None:
            raise CliError(f"no account for {args.email}")
        try:
            if args.file:
                with open(args.file, "rb") as f:
                    certificates.add(app, session, account, f.read(), CertSource.ADMIN, "cli")
            elif args.approve or args.revoke:
                certificates.decide(session, account, args.approve or args.revoke,
                                    approve=bool(args.approve), actor="cli")
        except (certificates.CertError, OSError) as exc:
            raise CliError(str(exc)) from None
        rows = [cert_dict(c) for c in certificates.listed(session, account)]
    emit(rows, args.json, ["fingerprint", "status", "source", "issuer", "not_after"],
         f"{args.email} has no S/MIME certificate")
    return 0
