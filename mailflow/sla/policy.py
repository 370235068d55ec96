"""SLA policies (schedules/sla.toml): targets, warning points, escalation, red flags."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class PolicyError(Exception):
    pass


@dataclass(frozen=True)
class Policy:
    name: str
    target_minutes: int
    warnings: tuple[float, ...]  # fractions of the target, ascending
    page_on_call: bool = False


@dataclass(frozen=True)
class RedFlag:
    name: str
    words: tuple[str, ...]


@dataclass(frozen=True)
class SlaPolicies:
    policies: dict[str, Policy]
    admins: tuple[str, ...]
    reassign_on_breach: bool
    reminders_in_hours_only: bool
    red_flags: tuple[RedFlag, ...]
    met_target_percent: float = 95.0  # the share of cases that should meet their deadline

    def for_urgency(self, urgency: str) -> Policy:
        return self.policies.get(urgency) or self.policies["routine"]

    def red_flags_in(self, text: str) -> list[str]:
        lowered = text.lower()
        found = [f.name for f in self.red_flags if all(w in lowered for w in f.words)]
        return list(dict.fromkeys(found))


DEFAULT = {
    "policy": {
        "routine": {"target_minutes": 120, "warnings": [0.75, 0.9]},
        "urgent": {"target_minutes": 60, "warnings": [0.75, 0.9], "page_on_call": True},
    },
    "escalation": {"admins": [], "reassign_on_breach": False, "reminders_in_hours_only": True},
    "red_flags": {"rules": []},
    "compliance": {"met_target_percent": 95},
}


def _policy(name: str, raw: dict[str, Any], where: str) -> Policy:
    unknown = set(raw) - {"target_minutes", "warnings", "page_on_call"}
    if unknown:
        raise PolicyError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    target = raw.get("target_minutes")
    if not isinstance(target, int) or target <= 0:
        raise PolicyError(f"{where}: target_minutes must be a whole number of minutes above 0")
    warnings = raw.get("warnings", [])
    if not all(isinstance(w, int | float) and 0 < w < 1 for w in warnings):
        raise PolicyError(f"{where}: warnings are fractions between 0 and 1, e.g. [0.75, 0.9]")
    return Policy(name, target, tuple(sorted(float(w) for w in warnings)),
                  bool(raw.get("page_on_call", False)))


def policies_from(data: dict[str, Any], where: str) -> SlaPolicies:
    raw_policies = data.get("policy", {})
    if "routine" not in raw_policies:
        raise PolicyError(f"{where}: [policy.routine] is required")
    policies = {name: _policy(name, raw, f"{where} [policy.{name}]")
                for name, raw in raw_policies.items()}
    escalation = data.get("escalation", {})
    flags = []
    for i, rule in enumerate(data.get("red_flags", {}).get("rules", []), start=1):
        if not rule.get("name") or not rule.get("all"):
            raise PolicyError(f"{where}: red flag rule {i} needs a name and a list 'all'")
        flags.append(RedFlag(rule["name"], tuple(w.lower() for w in rule["all"])))
    met_target = data.get("compliance", {}).get("met_target_percent", 95)
    if not isinstance(met_target, int | float) or not 0 < met_target <= 100:
        raise PolicyError(f"{where}: [compliance] met_target_percent is a percentage, e.g. 95")
    return SlaPolicies(
        policies=policies,
        met_target_percent=float(met_target),
        admins=tuple(a.lower() for a in escalation.get("admins", [])),
        reassign_on_breach=bool(escalation.get("reassign_on_breach", False)),
        reminders_in_hours_only=bool(escalation.get("reminders_in_hours_only", True)),
        red_flags=tuple(flags),
    )


def load_policies(path: Path) -> SlaPolicies:
    if not path.exists():
        return policies_from(DEFAULT, "built-in SLA policies")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: not valid TOML: {exc}") from exc
    return policies_from(data, path.name)
