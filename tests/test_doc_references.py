"""Every section of docs/method.md that the repository cites exists, every §9 switch it names is in the §9
tables, and nothing cites documents that are not in the repository (the original specification and
design notes the method page was written from)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHOD = (ROOT / "docs" / "method.md").read_text()
SECTIONS = set(re.findall(r"^#{2,3} §(\d+(?:\.\d+)?) ", METHOD, flags=re.M))
SWITCHES = set(re.findall(r"^\| \*\*([A-Z]+\d+)\*\* ", METHOD, flags=re.M))
CITATION = re.compile(r"§ ?(\d+(?:\.\d+)?)(?: ([A-Z]{1,2}\d+))?")
FOLDERS = ("srha_hf", "tests", "scripts", "benchmarks", "experiments", "configs", "docs")


def cited_files():
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in {".py", ".md", ".yaml", ".sh", ".cfg"} and "fixtures" not in path.parts:
                yield path
    yield ROOT / "README.md"


def test_the_method_page_has_its_sections_and_switches():
    assert {"1.2", "5.4", "8.6", "9"} <= SECTIONS and {"M1", "M10", "MF3", "D3", "T4"} <= SWITCHES


def test_every_cited_section_and_switch_exists():
    missing = []
    for path in cited_files():
        for number, switch in CITATION.findall(path.read_text(encoding="utf-8")):
            if number not in SECTIONS:
                missing.append(f"{path.relative_to(ROOT)}: §{number}")
            elif switch and number == "9" and switch not in SWITCHES:
                missing.append(f"{path.relative_to(ROOT)}: §9 {switch}")
    assert not missing, "citations of docs/method.md that it does not have:\n" + "\n".join(sorted(set(missing)))


def test_no_file_cites_documents_outside_the_repository():
    pattern = re.compile(r"\bSPEC(?:\.md)? ?§|\bSPEC\.md\b|\bDESIGN\.md\b")
    offenders = [str(p.relative_to(ROOT)) for p in cited_files() if p != Path(__file__) and pattern.search(p.read_text(encoding="utf-8"))]
    assert not offenders, offenders


def test_relative_links_of_the_markdown_pages_resolve():
    pages = [ROOT / "README.md", *sorted(ROOT.glob("docs/*.md")), *sorted(ROOT.glob("benchmarks/*.md")), *sorted(ROOT.glob("experiments/*.md"))]
    broken = [
        f"{page.relative_to(ROOT)}: {link}"
        for page in pages
        for link in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8"))
        if not link.startswith(("http://", "https://", "mailto:")) and not (page.parent / link).exists()
    ]
    assert not broken, broken
