"""Jinja2 rendering for every email: `<name>.txt.j2` (first line `Subject: ...`) and an
optional autoescaped `<name>.html.j2` alternative."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    select_autoescape,
)

from mailflow.outbound.form_guide import case_form_text, required_fields
from mailflow.outbound.plainhtml import plain_to_html


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


@lru_cache(maxsize=8)
def environment(templates_dir: Path) -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(templates_dir)),
        autoescape=select_autoescape(enabled_extensions=("html", "html.j2"), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    # The form and its required lines come from the parser's lists, never a copy of them.
    env.globals["case_form"] = case_form_text()
    env.globals["required_fields"] = required_fields()
    env.filters["plain_html"] = plain_to_html
    return env


def render_email(templates_dir: Path, name: str, context: dict[str, Any]) -> Rendered:
    env = environment(templates_dir)
    text = env.get_template(f"email/{name}.txt.j2").render(**context)
    first, _, body = text.partition("\n")
    if not first.startswith("Subject:"):
        raise ValueError(f"email/{name}.txt.j2 must start with a 'Subject:' line")
    subject = " ".join(first[len("Subject:") :].split())
    body = body.lstrip("\n")
    try:
        html = env.get_template(f"email/{name}.html.j2").render(**context)
    except TemplateNotFound:  # every email gets an HTML part that reads well on a phone
        html = env.get_template("email/_text.html.j2").render(
            **context, subject=subject, text=body
        )
    return Rendered(subject=subject, text=body, html=html)
