"""The README's two settings tables, made from the settings model (`python -m app settings --markdown`)."""

from __future__ import annotations

from pathlib import Path

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


def update_readme(path: Path) -> bool:
    """Replace the marked tables in a README with the model's; True if anything changed."""
    text = path.read_text(encoding="utf-8")
    new = text
    for block in blocks():
        first, last = block.splitlines()[0], block.splitlines()[-1]
        start, end = new.find(first), new.find(last)
        if start < 0 or end < 0:
            raise ValueError(f"{path} has no {first} ... {last} block")
        new = new[:start] + block.rstrip("\n") + new[end + len(last) :]
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text
