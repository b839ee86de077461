"""The report renders as Markdown and standalone HTML whose every image is a real PNG at its relative path."""
import html.parser
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from popdata import row

from evaluators.result import Status
from search.population import Population
from search.report import report

PNG = b"\x89PNG\r\n\x1a\n"


class _Images(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])


@pytest.fixture
def campaign(tmp_path: Path) -> Path:
    rng = random.Random(1)
    rows = []
    for i in range(120):
        problem = rng.choice(["/p/level1/add.py", "/p/level1/mul.py", "/p/level2/fused.py", "/p/level2/nope.py"])
        status = Status.MISMATCH if "nope" in problem else rng.choice(
            [Status.ACCEPTED, Status.ACCEPTED, Status.TIMEOUT, Status.SUSPECT_SPEEDUP])
        rows.append(row(f"r{i}", problem=problem, hardware=rng.choice(["cpu", "h100"]), status=status,
                        speedup=rng.lognormvariate(0, 0.5), err=10 ** rng.uniform(-9, -3), minutes=i,
                        reason="x < y | z" if status is Status.MISMATCH else ""))
    d = tmp_path / "camp"
    with Population.open(d, writer=True) as pop:
        pop.append(rows)
    return d


def test_markdown_html_and_plots_are_written(campaign: Path) -> None:
    r = report(campaign)
    assert r.markdown.parent == campaign / "report"
    md = r.markdown.read_text()
    for heading in ("Speedup by level", "Best speedup per problem", "Best so far", "Failures by status",
                    "Pareto fronts"):
        assert f"## {heading}" in md
    assert "| level1 | cpu |" in md and "| level2 |" in md
    assert "x < y \\| z" in md   # a pipe in a reason does not break the table
    names = {p.name for p in r.plots}
    assert {"best_per_problem.png", "best_so_far.png", "failures_by_status.png", "pareto__add.png"} <= names
    assert "pareto__nope.png" not in names   # nothing accepted, no front
    for p in r.plots:
        assert p.read_bytes().startswith(PNG) and p.stat().st_size > 1000


def test_html_references_every_plot_by_relative_path(campaign: Path) -> None:
    r = report(campaign)
    parser = _Images()
    page = r.html.read_text()
    parser.feed(page)
    assert page.startswith("<!DOCTYPE html>") and "x &lt; y | z" in page
    assert len(parser.srcs) == len(r.plots)
    for src in parser.srcs:
        assert not src.startswith(("/", "http")) and (r.html.parent / src).read_bytes().startswith(PNG)
    assert "script" not in parser.tags and "link" not in parser.tags   # nothing fetched from elsewhere


def test_embedded_images_make_a_single_file_report(campaign: Path, tmp_path: Path) -> None:
    r = report(campaign, tmp_path / "single", embed_images=True)
    parser = _Images()
    parser.feed(r.html.read_text())
    assert parser.srcs and all(s.startswith("data:image/png;base64,") for s in parser.srcs)


def test_empty_campaign_still_renders(tmp_path: Path) -> None:
    r = report(tmp_path / "none", tmp_path / "out")
    assert "0 evaluations" in r.markdown.read_text() and r.html.exists()


def _chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)


@pytest.mark.skipif(_chromium() is None, reason="needs Debian's chromium (installed by .ci/run)")
def test_every_plot_loads_in_headless_chromium(campaign: Path, tmp_path: Path) -> None:
    r = report(campaign)
    # A probe page beside the report: it loads the report in a frame and writes how many images loaded.
    probe = r.html.parent / "probe.html"
    probe.write_text(
        "<!DOCTYPE html><html><body><iframe id=f src='report.html' width=1200 height=900></iframe><pre id=out>"
        "pending</pre><script>document.getElementById('f').onload=function(){var imgs=this.contentDocument"
        ".images,ok=0;for(var i=0;i<imgs.length;i++){if(imgs[i].complete&&imgs[i].naturalWidth>0)ok++;}"
        "document.getElementById('out').textContent='loaded '+ok+' of '+imgs.length;};</script></body></html>")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
             "--virtual-time-budget=10000"]
    dom = subprocess.run([_chromium(), *flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    n = len(r.plots)
    assert f"loaded {n} of {n}" in dom
    shot = tmp_path / "report.png"
    subprocess.run([_chromium(), *flags, f"--screenshot={shot}", "--window-size=1200,3000", r.html.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.read_bytes().startswith(PNG)
