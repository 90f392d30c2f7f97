"""The README and docs/*.md: every relative link and image points at a file that exists, every
#anchor at a heading of its target (GitHub's slugs), no machine's absolute path, and the README
stays a short user's guide; its results table is what the command it shows prints from the CSVs.
No TensorFlow: seconds."""

import importlib.util
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 300

LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...


def pages():
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def prose_lines(text):
    """(line number, line) outside fenced code blocks, inline code removed."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, INLINE_CODE.sub("", line)


def slug(heading):
    """GitHub's anchor for a heading's text: links and emphasis keep their words, lower case,
    punctuation and symbols dropped (word characters, spaces and hyphens kept), spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path):
    """Every heading's slug in a page, repeats numbered as GitHub numbers them (-1, -2, ...)."""
    seen, found = {}, set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path):
    """(line number, target) of every markdown link and image in a page's prose."""
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        for match in LINK.finditer(line):
            yield number, match.group(1)


def broken_links(path):
    """What is wrong with a page's relative links: a missing file, or an anchor no heading has."""
    problems = []
    for number, target in links(path):
        if EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        if file_part.startswith("/"):
            problems.append(f"{path.name}:{number}: {target}: an absolute path")
            continue
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.exists():
            problems.append(f"{path.name}:{number}: {target}: no such file")
        elif anchor and (resolved.suffix != ".md" or anchor not in anchors(resolved)):
            problems.append(f"{path.name}:{number}: {target}: no heading #{anchor} in {resolved.name}")
    return problems


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_link_and_anchor_resolves(page):
    problems = broken_links(page)
    assert not problems, "\n".join(problems)


def test_the_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_machine_paths(page):
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"(?<![\w.])/(root|work|home|Users)/", text), "an absolute path of one machine"


def test_the_checks_catch_a_broken_link(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other page\n\n## A `flag` (and more)\n")
    absolute = "/" + "abs/path.md"  # a link from the file system's root, refused (kept out of path scans)
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n## Same page\n\n"
                    "[fine](docs/other.md#a-flag-and-more) [fine](#same-page) ![fine](docs/other.md)\n"
                    "[missing file](docs/nothing.md) ![missing image](docs/figures/none.png)\n"
                    "[wrong anchor](docs/other.md#a-flag) [wrong here](#nowhere) "
                    f"[a]({absolute})\n"
                    "`[in code](docs/nothing.md)`\n\n```\n[in a block](docs/nothing.md)\n```\n"
                    "[web](https://example.org/x#y)\n")
    problems = broken_links(page)
    assert [p.split(": ")[1] for p in problems] == [
        "docs/nothing.md", "docs/figures/none.png", "docs/other.md#a-flag", "#nowhere", absolute]


def test_slugs_as_github_makes_them():
    assert slug("Successive halving (`--halving`)") == "successive-halving---halving"
    assert slug("At 64×64, with continuing and restarting halving") == "at-6464-with-continuing-and-restarting-halving"
    assert slug("Which search method?") == "which-search-method"
    assert slug("History: the accuracy recipe on the canonical split") == (
        "history-the-accuracy-recipe-on-the-canonical-split")
    assert slug("Hyperparameters (one frozen dataclass, `beans_tune.hparams.HParams`)") == (
        "hyperparameters-one-frozen-dataclass-beans_tunehparamshparams")


def glance_command(text):
    """The arguments of the `python experiments/glance.py ...` command a page shows in a code block
    (continued lines joined)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    found = [line for line in joined.splitlines() if line.startswith("python experiments/glance.py ")]
    assert found, "the README shows no `python experiments/glance.py ...` command"
    return shlex.split(found[0])[2:]


def markdown_table(text, header):
    """The lines of the Markdown table of a page that starts with `header`, to its first non-table line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


def test_the_readmes_results_table_is_what_its_command_prints(tmp_path, monkeypatch, capsys):
    """The table of accuracies is regenerated from the CSVs it names, never typed."""
    spec = importlib.util.spec_from_file_location("glance", ROOT / "experiments" / "glance.py")
    glance = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(glance)
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    argv = glance_command(text)
    at = argv.index("--out")
    argv[at + 1] = str(tmp_path / "glance.png")
    monkeypatch.chdir(ROOT)
    assert glance.main(argv) == 0
    table = capsys.readouterr().out.split("\nwrote ")[0].splitlines()
    assert table[0].startswith("| command |") and markdown_table(text, table[0]) == table
