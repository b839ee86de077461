"""``kswarm add`` puts a hand-written candidate where the campaign's inbox proposer finds it, running or stopped."""
import subprocess
import sys
from pathlib import Path

from proposers.base import StaticView
from search.campaign import INBOX, build_proposers
from search.config import load_config
from search.snapshot import write_snapshot

PROBLEM = "import torch\nimport torch.nn as nn\n\nclass Model(nn.Module):\n    def forward(self, x):\n" \
          "        return x * 2.0\n\ndef get_inputs():\n    return [torch.randn(8)]\n\ndef get_init_inputs():\n" \
          "    return []\n"
CANDIDATE = "import torch\nimport torch.nn as nn\n\nclass ModelNew(nn.Module):\n    def forward(self, x):\n" \
            "        return x + x\n"


def _campaign(tmp: Path) -> Path:
    (tmp / "double.py").write_text(PROBLEM)
    toml = tmp / "c.toml"
    toml.write_text('[campaign]\nname = "t"\nout = "run"\n[budget]\nmax_evaluations = 2\nmax_minutes = 1\n'
                    '[[problems]]\npath = "double.py"\n[[targets]]\nhardware = "cpu"\n'
                    '[[proposers]]\nkind = "rewrites"\n')
    write_snapshot(load_config(toml))
    return tmp / "run"


def _kswarm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kswarm.cli", *args], capture_output=True, text=True, timeout=120)


def test_added_candidate_is_proposed_by_the_campaigns_inbox(tmp_path: Path) -> None:
    run = _campaign(tmp_path)
    cand = tmp_path / "double__mine.py"
    cand.write_text(CANDIDATE)
    r = _kswarm("add", str(run), str(cand))
    assert r.returncode == 0, r.stderr
    added = list((run / INBOX).glob("double__*.py"))
    assert len(added) == 1 and added[0].read_text() == CANDIDATE
    cfg = load_config(tmp_path / "c.toml")
    inbox = [p for spec, p in build_proposers(cfg, run) if spec.name == INBOX]
    got = inbox[0].propose(StaticView(problem_path=str(tmp_path / "double.py"), hardware="cpu"), 10)
    assert [c.source for c in got] == [CANDIDATE]


def test_add_refuses_what_it_cannot_use(tmp_path: Path) -> None:
    run = _campaign(tmp_path)
    cand = tmp_path / "other__x.py"
    cand.write_text(CANDIDATE)
    for args, words in ((["add", str(tmp_path / "nowhere"), str(cand)], "not a campaign directory"),
                        (["add", str(run), str(cand)], "not in this campaign"),
                        (["add", str(run), str(tmp_path / "missing.py")], "not found")):
        r = _kswarm(*args)
        assert r.returncode == 2
        assert words in r.stderr
        assert "Traceback" not in r.stderr
