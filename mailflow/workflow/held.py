"""Nobody waits unanswered: a message held from a signed-in sender gets a short reply.

Someone who proved who they are (SMTP AUTH as an approved account, or a sender verified by a
trusted relay) is told their message was held, in plain words, and what to do. Anyone else
gets nothing: From: can be forged, and a reply to a forged sender is backscatter. Automatic
mail is never answered (no loops).
"""

from __future__ import annotations

from mailflow.db.models import Account, AccountStatus
from mailflow.outbound.outbox import Email, queue
from mailflow.workflow import accounts
from mailflow.workflow.context import Inbound, Outcome

NEVER_ANSWERED = ("automatic",)

# reason code -> (why, in plain words; what to do). Codes not listed get DEFAULT.
PLAIN: dict[str, tuple[str, str]] = {
    "ambiguous-recipients": (
        "it was addressed to more than one case",
        "Please send it again as a reply to the latest email about the one case it is about.",
    ),
    "another-patient": (
        "it was sent on an earlier case's thread, but its form names a different patient",
        "To start a new case, please send it again to {cases} only (not as a reply). "
        "If it is about the earlier patient, reply to that case without {cases}.",
    ),
    "already-registered": (
        "you already have an account, so there is nothing to register",
        "Send new cases to {cases}, and reply to our emails to add to a case.",
    ),
    "forged-address": (
        "the case address it was sent to is not one we gave out",
        "Please reply to the latest email we sent you about the case, or send a new case.",
    ),
    "unknown-case": (
        "the case it was sent to does not exist",
        "Please reply to the latest email we sent you about the case, or send a new case.",
    ),
    "wrong-participant": (
        "it was sent on a case address that was given to someone else",
        "Please reply to the email we sent you about the case, from your own address.",
    ),
    "signals-disagree": (
        "it seems to be about two different cases",
        "Please reply to the latest email about the one case it is about, and keep that "
        "case's number in the subject.",
    ),
    "not-assignee": (
        "the case is no longer assigned to you",
        "No action is needed; our team will pass your message on if it is still useful.",
    ),
    "not-participant": (
        "you are not taking part in that case",
        "If the message belongs to the case, please ask the referring provider to send it.",
    ),
    "unverified": (
        "it was sent from a different address than the one you signed in with",
        "Please send it again from your account's own address.",
    ),
    "no-route": (
        "it was sent to an address we do not use",
        "Send new cases to {cases}, and reply to our emails to add to a case.",
    ),
}
_SMIME_TODO = ("Please sign it with your current certificate and send it again, encrypted "
               "to us. If your certificate has changed, please tell us.")
PLAIN.update({
    "smime-bad-signature": ("its signature does not match the message", _SMIME_TODO),
    "smime-untrusted": ("it is signed with a certificate we do not trust", _SMIME_TODO),
    "smime-expired": ("it is signed with a certificate that has run out", _SMIME_TODO),
    "smime-signer-mismatch": ("it is signed with a certificate for another address",
                              _SMIME_TODO),
    "smime-not-for-us": ("it was locked for someone else, so we cannot open it", _SMIME_TODO),
    "smime-unreadable": ("we could not open its secure email", _SMIME_TODO),
    "smime-revoked": ("it is signed with a certificate we no longer take", _SMIME_TODO),
    "smime-weak-hash": ("it is signed with an old kind of signature (SHA-1 or MD5) that is no "
                        "longer safe", "Please set your email program to sign with SHA-256 and "
                        "send it again, encrypted to us."),
})
DEFAULT = ("we could not tell where it belongs", "Our team will look at it and put it right.")


def signed_in_account(m: Inbound) -> Account | None:
    """The approved account that proved it sent this message, if any."""
    row = m.row
    if row.auth_user:
        account = accounts.find(m.session, row.auth_user)
    elif m.verdict is not None and m.verdict.verified:
        account = m.sender
    else:
        return None
    if account is None or account.status != AccountStatus.APPROVED:
        return None
    return account


def tell_held(m: Inbound, outcome: Outcome) -> None:
    """Queue the short reply for a held message, when its sender signed in."""
    if outcome.reason_code in NEVER_ANSWERED or m.analysis.automatic:
        return
    account = signed_in_account(m)
    if account is None:
        return
    why, todo = PLAIN.get(outcome.reason_code, DEFAULT)
    config = m.app.config
    message = m.analysis.message
    queue(
        m.app,
        m.session,
        Email(
            kind="held",
            template="held",
            to=account.email,
            recipient=account,
            context={"why": why,
                     "todo": todo.format(cases=config.address(config.mail.cases_local))},
            in_reply_to=message.message_id if message is not None else "",
        ),
        cause_message_id=m.row.id,
    )
