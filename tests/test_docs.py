"""The documentation's promises: links resolve, documented commands exist and take the flags shown, no chronicle."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("docs/bench/*.md")])
# Files the README links to that land with another branch. Emptied when they exist (a test below insists).
PENDING: set[str] = set()

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
INLINE = re.compile(r"`([^`\n]+)`")
COMMAND = re.compile(r"python (pipelines/\w+\.py)((?:[^\n;&#|]|\\\|)*)")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
CHRONICLE = re.compile(r"(first|second|third|[a-z]+th) session|this session|session's", re.I)


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (hyphens and underscores kept), spaces -> '-'."""
    text = re.sub(r"`", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def _anchors(path: Path) -> set[str]:
    found: set[str] = set()
    for line in FENCE.sub("", path.read_text()).splitlines():
        if line.startswith("#"):
            slug, n = _slug(line.lstrip("#")), 0
            while (slug if n == 0 else f"{slug}-{n}") in found:
                n += 1
            found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def _links(path: Path) -> list[str]:
    return [m.group(1) for m in LINK.finditer(FENCE.sub("", path.read_text()))]


def _commands(path: Path) -> list[tuple[str, str]]:
    """(script, its arguments) of every `python pipelines/X.py ...` in code blocks and inline code."""
    text = path.read_text()
    spans = [block.replace("\\\n", " ") for block in FENCE.findall(text)]
    spans += INLINE.findall(FENCE.sub("", text))
    return [(m.group(1), m.group(2)) for span in spans for m in COMMAND.finditer(span)]


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_relative_links_point_to_existing_files_and_headings(doc):
    broken = []
    for target in _links(doc):
        if re.match(r"[a-z]+:", target):  # http(s):, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if file_part and _rel(dest) in PENDING and not dest.exists():
            continue
        if not dest.exists():
            broken.append(f"{target} (no file {dest})")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target} (no heading with anchor #{anchor} in {_rel(dest)})")
    assert not broken, f"{_rel(doc)} has broken links: {broken}"


def test_pending_link_targets_are_still_missing():
    landed = sorted(p for p in PENDING if (ROOT / p).exists())
    assert not landed, f"{landed} exist now: remove them from PENDING in tests/test_docs.py"


def test_readme_shows_the_stage_commands():
    scripts = {script for script, _ in _commands(ROOT / "README.md")}
    assert {"pipelines/train_vae.py", "pipelines/train_diffusion.py", "pipelines/sample.py"} <= scripts


@cache
def _help(script: str) -> str:
    result = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "400"})
    assert result.returncode == 0, f"{script} --help failed: {result.stderr[-2000:]}"
    return result.stdout


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_documented_commands_exist_and_take_the_flags_shown(doc):
    problems = []
    for script, args in _commands(doc):
        if not (ROOT / script).is_file():
            problems.append(f"{script} does not exist")
            continue
        accepted = set(FLAG.findall(_help(script)))
        unknown = sorted(set(FLAG.findall(args)) - accepted)
        if unknown:
            problems.append(f"{script} takes no {unknown}")
    assert not problems, f"{_rel(doc)}: {problems}"


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_no_chronicle_of_work_periods(doc):
    hits = [line.strip() for line in doc.read_text().splitlines() if CHRONICLE.search(line)]
    assert not hits, f"{_rel(doc)} narrates work periods; state the date or commit instead: {hits}"
