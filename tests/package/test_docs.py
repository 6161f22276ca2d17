"""The documentation in docs/: the generated CLI reference is current, every link into docs/ resolves
to a real heading, and the docs stand on their own."""

from __future__ import annotations

import argparse
import re
import unicodedata
from pathlib import Path

import pytest

from cascal import cli_docs
from cascal.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
#: Where code, tests and docs may cite a docs page (``docs/algorithm.md#consensus-scores``).
CITING_TREES = ("python", "rust", "tests", "benches", "docs", "examples")
CITING_SUFFIXES = {".py", ".pyi", ".rs", ".md", ".toml", ".yaml", ".yml"}


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, every character but letters, digits,
    spaces, hyphens and underscores dropped, spaces -> '-' (headings here use no _emphasis_)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())  # [text](link) -> text
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every heading anchor of a Markdown page (duplicates numbered as GitHub does), plus explicit
    ``<a id="...">`` anchors."""
    found: set[str] = set()
    counts: dict[str, int] = {}
    in_fence = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
            continue
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match and not in_fence:
            slug = github_slug(match.group(1))
            n = counts.get(slug, 0)
            counts[slug] = n + 1
            found.add(slug if n == 0 else f"{slug}-{n}")
    found.update(re.findall(r'<a id="([^"]+)"', markdown))
    return found


def test_slugs_follow_github():
    assert github_slug("Choices we measured") == "choices-we-measured"
    assert github_slug("`cascal train`") == "cascal-train"
    assert github_slug("Consensus scores (step 1-5)") == "consensus-scores-step-1-5"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n") == {"a", "a-1"}


def test_cli_reference_is_current():
    committed = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert committed == cli_docs.render(), (
        f"docs/cli.md is out of date with the argparse parsers: run `{cli_docs.REGENERATE}` and commit it"
    )


def test_cli_reference_documents_every_command_and_option():
    text = cli_docs.render()
    parser = build_parser()
    commands = cli_docs.subcommands(parser)
    assert set(commands) >= {
        "answer",
        "bench",
        "demo",
        "embed",
        "evaluate",
        "filter",
        "generate",
        "route",
        "simulate",
        "train",
    }
    page_anchors = anchors(text)
    for name, sub in commands.items():
        assert f"cascal-{name}" in page_anchors
        assert f"](#cascal-{name})" in text  # listed in the command table, with a working link
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            for option in action.option_strings:
                assert f"`{option}" in text or f", {option}" in text, f"{name}: {option} missing"
    # a required option is marked, a repeatable one too, and a pipe in a metavar cannot split a table row
    assert "| `--out OUT` | **required.** router file to write" in text
    assert "*repeatable.*" in text
    assert "`--subject-temp T\\|auto`" in text


def test_renderer_reads_declared_arguments_not_the_terminal():
    parser = argparse.ArgumentParser(prog="cascal")
    sub = parser.add_subparsers(dest="command")
    cmd = sub.add_parser("toy", description="a <toy> command")
    cmd.add_argument("path", help="input")
    cmd.add_argument("-n", "--count", type=int, default=3, help="how many (default %(default)s)")
    cmd.add_argument("--mode", choices=("a", "b"), required=True, help="a | b")
    cmd.add_argument("--tag", action="append", metavar="T", help="a tag")
    cmd.add_argument("--flag", action="store_true", help="on/off")
    text = cli_docs.render(parser)
    assert "cascal toy [--count COUNT] --mode {a,b} [--tag T] [--flag] path" in text  # declaration order
    assert "| `-n, --count COUNT` | how many (default 3) |" in text
    assert "| `--mode {a,b}` | **required.** a \\| b |" in text
    assert "| `--tag T` | *repeatable.* a tag |" in text
    assert "a &lt;toy> command" in text


def _doc_links() -> list[tuple[Path, str, str]]:
    """(citing file, target page, anchor or '') of every ``docs/<page>.md[#anchor]`` citation in the
    repository, and of every relative ``(page.md#anchor)`` link between pages of docs/."""
    links = []
    files = [REPO / "README.md"] + [
        p for tree in CITING_TREES for p in (REPO / tree).rglob("*") if p.is_file() and p.suffix in CITING_SUFFIXES
    ]
    for file in files:
        text = file.read_text(encoding="utf-8", errors="replace")
        for page, anchor in re.findall(r"docs/([\w.-]+\.md)(?:#([\w-]+))?", text):
            links.append((file, page, anchor))
        if file.parent == DOCS:
            for page, anchor in re.findall(r"\]\(([\w.-]+\.md)?(?:#([\w-]+))?\)", text):
                links.append((file, page or file.name, anchor))
    return links


def test_every_link_into_docs_resolves():
    links = _doc_links()
    assert any(anchor == "choices-we-measured" for _, _, anchor in links)  # the router docstring's pointer
    broken = []
    for file, page, anchor in links:
        target = DOCS / page
        if not target.exists():
            broken.append(f"{file.relative_to(REPO)}: docs/{page} does not exist")
        elif anchor and anchor not in anchors(target.read_text(encoding="utf-8")):
            broken.append(f"{file.relative_to(REPO)}: docs/{page} has no heading with anchor #{anchor}")
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_docs_stand_on_their_own(page):
    """No page points at the original specification or at paths outside the repository."""
    text = (DOCS / page).read_text(encoding="utf-8")
    assert "DESIGN" not in text
    for outside in ("../shared", "/work/", "/tmp/", "/home/", "/root/"):
        assert outside not in text, f"docs/{page} mentions {outside!r}, a path outside the repository"


def test_readme_keeps_its_commands_and_does_not_cite_the_specification():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "DESIGN" not in readme
    assert "```bash\npip install . && cascal demo\n```" in readme
    marker = re.search(r"^<!-- test-command: (.*) -->$", readme, re.M)
    assert marker, "README.md lost the test-command marker that .ci/run executes"
    command = marker.group(1)
    for part in ("bash .ci/lint", "cargo test --release -p cascal-core", "python -m pytest -q"):
        assert part in command
    assert f"```bash\npip install '.[test]' && {command}\n```" in readme, (
        "the shown test command differs from the marker"
    )
    assert "docs/README.md" in readme


def test_index_lists_every_page():
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    for page in DOCS.glob("*.md"):
        if page.name != "README.md":
            assert f"]({page.name})" in index, f"docs/README.md does not link {page.name}"
