"""docs/deploy.md "Rolling upgrade": a release's migration only adds what the running release
(which never names it) and the new one both accept, so machines are upgraded one at a time
while the others keep working on the migrated database."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mailflow.db.session import MIGRATIONS

# what a running release would trip over: a column or table it uses gone or changed
REMOVING = {"drop_column", "drop_table", "alter_column", "drop_constraint", "rename_table",
            "drop_index", "execute"}
BEFORE_THE_RULE = {"0011_signin_lockout.py"}  # before several machines were supported


def upgrades() -> list[Path]:
    return sorted((Path(MIGRATIONS) / "versions").glob("0*.py"))


def _upgrade(path: Path) -> ast.FunctionDef:
    tree = ast.parse(path.read_text())
    return next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "upgrade")


def _calls(node: ast.AST) -> list[ast.Call]:
    return [n for n in ast.walk(node)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]


@pytest.mark.parametrize("path", [p for p in upgrades() if p.name not in BEFORE_THE_RULE],
                         ids=lambda p: p.name)
def test_a_migration_only_adds(path: Path) -> None:
    calls = _calls(_upgrade(path))
    removing = sorted({c.func.attr for c in calls if c.func.attr in REMOVING})  # type: ignore[attr-defined]
    assert not removing, f"{path.name} {removing}: do it in a later release (docs/deploy.md)"
    for call in calls:
        if call.func.attr != "add_column":  # type: ignore[attr-defined]
            continue
        column = next(a for a in call.args if isinstance(a, ast.Call))
        words = {k.arg: k.value for k in column.keywords}
        nullable = words.get("nullable")
        accepts_old_inserts = (
            "server_default" in words
            or nullable is None or (isinstance(nullable, ast.Constant) and nullable.value))
        assert accepts_old_inserts, (
            f"{path.name}: an added column must be nullable or have a server_default, or the "
            "release still running cannot insert rows")


def test_the_rule_catches_a_dropped_column(tmp_path: Path) -> None:
    bad = tmp_path / "0099_bad.py"
    bad.write_text("def upgrade():\n    op.drop_column('cases', 'form')\n")
    assert {c.func.attr for c in _calls(_upgrade(bad))} & REMOVING  # type: ignore[attr-defined]
