"""The README's two settings tables, made from the settings model (`python -m app settings --markdown`)."""

from __future__ import annotations

from app.settings.model import FIELDS
from edgekit.typed_settings import default_text, markdown_rows, twin_type_text


def env_table() -> str:
    rows = [("Variable", "Meaning"), ("---", "---")]
    rows += [(f"`{f.spec.env}`", f"{f.spec.help} Default: {default_text(f)}") for f in FIELDS]
    return markdown_rows(rows)


def twin_table() -> str:
    rows = [("Desired property", "Type", "Environment variable"), ("---", "---", "---")]
    rows += [(f"`{f.twin}`", twin_type_text(f), f"`{f.spec.env}`") for f in FIELDS if f.spec.live]
    return markdown_rows(rows)


def _marked(name: str, table: str) -> str:
    return f"<!-- settings:{name} -->\n{table}\n<!-- /settings:{name} -->\n"


def blocks() -> list[str]:
    """Both tables, each between its markers, as the README has them ("## Configuration", "Desired properties")."""
    return [_marked("env", env_table()), _marked("twin", twin_table())]


def tables() -> str:
    return "\n".join(blocks())
