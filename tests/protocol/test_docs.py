"""The generated protocol reference: committed file up to date, every command documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cth01.protocol import COMMANDS
from cth01.protocol.docs import (
    command_anchor,
    render_protocol_markdown,
    write_protocol_markdown,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


@pytest.fixture(scope="module")
def rendered() -> str:
    return render_protocol_markdown()


def test_committed_protocol_md_is_up_to_date(rendered):
    actual = DOC.read_text(encoding="utf-8") if DOC.exists() else None
    if actual == rendered:
        return
    if actual is None:
        pytest.fail("docs/protocol.md is missing: run `make docs`")
    old, new = actual.splitlines(), rendered.splitlines()
    line = next((i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b),
                min(len(old), len(new)))
    pytest.fail(f"docs/protocol.md differs from render_protocol_markdown() (first difference "
                f"at line {line + 1}): run `make docs`", pytrace=False)


def test_rendering_is_deterministic(rendered):
    assert render_protocol_markdown() == rendered


def _section(text: str, cmd) -> str:
    anchor = f'<a id="{command_anchor(cmd)}"></a>'
    assert text.count(anchor) == 1, f"{cmd.key} {cmd.name}: anchor missing or repeated"
    start = text.index(anchor)
    nxt = text.find('<a id="', start + len(anchor))
    return text[start:nxt if nxt != -1 else len(text)]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: f"{c.key}-{c.name}-"
                         + "-".join(sorted(d.value for d in c.dialects)))
def test_every_command_is_documented(rendered, cmd):
    section = _section(rendered, cmd)
    heading = section.splitlines()[2]
    assert heading.startswith("### "), heading
    assert cmd.name in heading and cmd.title in heading
    assert f"`{cmd.key}`" in section  # the wire key
    for d in cmd.dialects:
        assert d.value in section
    for name in cmd.names:  # every field of the item's JSON has a row
        assert f"| `{name}` |" in section, f"{cmd.key} {cmd.name}: no row for field {name}"
    for example in cmd.examples:
        assert f"Example `{example}` →" in section, f"{cmd.key}: example {example} not decoded"
    # and the command is linked from the index
    assert f"](#{command_anchor(cmd)})" in rendered


def test_anchors_are_unique():
    anchors = [command_anchor(c) for c in COMMANDS]
    assert len(set(anchors)) == len(anchors)


def test_every_example_decodes(rendered):
    assert "does not decode" not in rendered


def test_internal_links_resolve(rendered):
    targets = set(re.findall(r'<a id="([^"]+)"></a>', rendered))
    links = set(re.findall(r"\]\(#([^)]+)\)", rendered))
    assert links <= targets, sorted(links - targets)


def test_write_protocol_markdown(tmp_path, rendered):
    path = tmp_path / "docs" / "protocol.md"
    assert write_protocol_markdown(path) is True
    assert path.read_text(encoding="utf-8") == rendered
    assert write_protocol_markdown(path) is False
