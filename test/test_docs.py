"""Documentation: the Sphinx build of doc/ is warning-free, README.md stays short and its links work,
and the node's parameter reference lists every declared parameter."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOC = ROOT / "doc"
README_MAX_LINES = 250

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)


def _prose(text: str) -> str:
    """Markdown without fenced blocks and inline code (a `[x](y)` there is not a link)."""
    return _INLINE_CODE.sub("", _FENCE.sub("", text))


def _links(text: str) -> list[str]:
    prose = _prose(text)
    return _LINK.findall(prose) + _REF_DEF.findall(prose)


def _slug(heading: str) -> str:
    """GitHub's heading anchor (what MyST's myst_heading_anchors generates too)."""
    text = re.sub(r"`|\*\*|__", "", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(md: Path) -> set[str]:
    text = _FENCE.sub("", md.read_text(encoding="utf-8"))
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M)}


def test_sphinx_build_is_warning_free(tmp_path):
    """`make docs` in a temp dir: any Sphinx/MyST warning (broken link or anchor, page outside the
    toctree, bad markup) fails the build (-W)."""
    missing = []
    for module in ("sphinx", "myst_parser"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        pytest.skip(f"{' and '.join(missing)} not importable: install requirements.txt (sphinx, myst-parser) "
                    "to build the documentation")
    out = tmp_path / "html"
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-d", str(tmp_path / "doctrees"),
         str(DOC), str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"sphinx -W failed (rc {proc.returncode}):\n{log[-6000:]}"
    assert "WARNING" not in log, log[-6000:]
    assert (out / "index.html").is_file()
    for page in DOC.glob("*.md"):
        assert (out / f"{page.stem}.html").is_file(), f"{page.name} was not built"


def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines (> {README_MAX_LINES}): move details into doc/"


def test_readme_relative_links_point_at_existing_files():
    links = _links(README.read_text(encoding="utf-8"))
    assert links, "no links found in README.md (parser broken?)"
    bad = []
    for link in links:
        if re.match(r"^[a-z][a-z0-9+.-]*:", link, re.I) or link.startswith("//"):
            continue  # http(s):, mailto:, ...
        path, _, anchor = link.partition("#")
        target = README if not path else (README.parent / path).resolve()
        if not target.exists():
            bad.append(f"{link}: {path} does not exist")
        elif anchor and target.suffix == ".md" and anchor not in _anchors(target):
            bad.append(f"{link}: no heading #{anchor} in {target.relative_to(ROOT)}")
    assert not bad, "broken relative links in README.md:\n" + "\n".join(bad)


def test_link_parser_skips_code():
    text = "see [a](doc/a.md) and `[b](nope.md)`\n```\n[c](nope2.md)\n```\n[d]: doc/d.md\n"
    assert sorted(_links(text)) == ["doc/a.md", "doc/d.md"]
    assert _slug("Chebyshev schedule (the default) and the paper's 8000 steps") == \
        "chebyshev-schedule-the-default-and-the-papers-8000-steps"


def test_node_reference_documents_every_parameter():
    """doc/node.md's parameter table names every parameter the node declares (dada_ros/ros/parameters.py)."""
    from dada_ros.ros.parameters import PARAMS

    text = (DOC / "node.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\|\s*`([^`]+)`\s*\|", text, re.M))
    missing = [p.name for p in PARAMS if p.name not in rows]
    assert not missing, f"parameters missing from the table in doc/node.md: {missing}"
