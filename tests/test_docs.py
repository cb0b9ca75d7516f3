"""The documentation against the code: every command has its section in the docs, and every
``asl-edge`` command line quoted in a shell block of the README or the docs parses with the
current parser (a renamed option or a removed choice fails here, not in a user's terminal)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from asl_edge.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
SHELL_BLOCK = re.compile(r"^```(bash|sh|shell|console)\s*$")
ENTRY = re.compile(r"(?:^|\s)(?:asl-edge|python3? -m asl_edge|-m asl_edge)\s+(.*)$")


def commands() -> List[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sorted(sub.choices)


def shell_lines(path: Path) -> Iterator[Tuple[int, str]]:
    """(line number, command line) of the shell blocks of a Markdown file, continuations joined
    and comments dropped."""
    inside, pending, start = False, "", 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            inside = bool(SHELL_BLOCK.match(line.strip())) and not inside
            pending = ""
            continue
        if not inside:
            continue
        text = line.split(" #", 1)[0].rstrip() if not line.lstrip().startswith("#") else ""
        if not pending:
            start = number
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        yield start, (pending + text).strip()
        pending = ""


def quoted_command_lines() -> List[Tuple[str, str]]:
    found = []
    for path in PAGES:
        for number, line in shell_lines(path):
            for part in re.split(r"\s*(?:&&|\|\||;)\s*", line):
                match = ENTRY.search(part)
                if match and not part.lstrip().startswith(("pip", "make")):
                    found.append((f"{path.relative_to(ROOT)}:{number}", match.group(1)))
    return found


def test_the_docs_pages_exist_and_the_site_lists_them():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        assert page.name in nav, f"docs/{page.name} is not in mkdocs.yml's nav"


@pytest.mark.parametrize("command", commands())
def test_every_command_has_a_docs_section(command):
    text = (ROOT / "docs" / "commands.md").read_text()
    assert re.search(rf"^#+ `asl-edge {re.escape(command)}`", text, re.M), \
        f"docs/commands.md has no section for `asl-edge {command}`"


def test_the_docs_quote_many_command_lines():
    # the check below must not pass by finding nothing
    assert len(quoted_command_lines()) >= 30


@pytest.mark.parametrize("where,line", quoted_command_lines())
def test_every_quoted_command_line_parses(where, line):
    argv = shlex.split(line)
    parser = build_parser()
    try:
        parser.parse_args(argv)
    except SystemExit as exit_:
        assert exit_.code == 0, f"{where}: `asl-edge {line}` does not parse with the current command line"


def test_help_lists_every_command_under_its_stage(capsys):
    from asl_edge.cli import COMMAND_GROUPS, main

    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    grouped = [name for _, names in COMMAND_GROUPS for name in names]
    assert sorted(grouped) == commands()
    for title, names in COMMAND_GROUPS:
        block = text.split(f"\n{title}:\n", 1)[1].split("\n\n", 1)[0]
        assert [line.split()[0] for line in block.splitlines() if not line.startswith(" " * 5)] == list(names)


def test_the_readme_links_into_the_docs_resolve():
    # mkdocs --strict checks the site's own links; the README is outside it
    from markdown.extensions.toc import slugify

    links = re.findall(r"\]\((docs/[^)#]+)(?:#([^)]+))?\)", (ROOT / "README.md").read_text())
    assert len(links) >= 10
    for page, anchor in links:
        assert (ROOT / page).is_file(), f"README links to {page}, which does not exist"
        if anchor:
            headings = [slugify(line.lstrip("#").strip().replace("`", ""), "-")
                        for line in (ROOT / page).read_text().splitlines() if line.startswith("#")]
            assert anchor in headings, f"README links to {page}#{anchor}, which has no such heading"
