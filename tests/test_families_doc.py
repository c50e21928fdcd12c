"""docs/families.md lists exactly the families, parameters and links the code accepts."""

from __future__ import annotations

import re
from pathlib import Path

from bayesmixed import _bambi
from bayesmixed.categories import CATEGORY_FAMILIES
from bayesmixed.validate import UNSUPPORTED_FAMILIES

PAGE = Path(__file__).resolve().parent.parent / "docs" / "families.md"


def _rows(section: str) -> dict[str, list[str]]:
    text = PAGE.read_text().split(section, 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in text.splitlines():
        m = re.match(r"\| `(\w+)` \|(.*)\|$", line)
        if m:
            rows[m.group(1)] = [c.strip() for c in m.group(2).split("|")]
    return rows


def test_supported_families_match_the_code():
    rows = _rows("## Supported families")
    supported = set(_bambi.family_names()) - UNSUPPORTED_FAMILIES - CATEGORY_FAMILIES
    assert set(rows) == supported
    for name, (_, params, default, links) in rows.items():
        parent, code_links, code_default = _bambi.family_links(name)
        assert re.findall(r"`(\w+)`", params) == _bambi.family_parameters(name), name
        assert params.startswith(f"`{parent}`"), name
        assert default == code_default, name
        assert [x.strip() for x in links.split(",")] == code_links, name


def test_ordinal_families_match_the_code():
    rows = _rows("## Ordinal and categorical families")
    assert set(rows) == set(CATEGORY_FAMILIES)
    for name, (_, _, default, links) in rows.items():
        _, code_links, code_default = _bambi.family_links(name)
        assert default == code_default, name
        assert [x.strip() for x in links.split(",")] == code_links, name


def test_refused_families_match_the_code():
    assert set(_rows("## Refused families")) == set(UNSUPPORTED_FAMILIES)
