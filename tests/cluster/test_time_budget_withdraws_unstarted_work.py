"""When the time budget is spent, work that has not reached a device is taken back instead of run: the dispatcher
never delivers a withdrawn key, and a campaign ends with what was running recorded and the rest logged."""
import json
from pathlib import Path

import pytest

from cluster.dispatch import Dispatcher
from search.campaign import Campaign
from search.checkpoint import load_checkpoint
from search.config import load_config
from search.population import read_population
from tests.cluster._evals import drain, request

pytestmark = pytest.mark.ray


def test_withdrawn_keys_are_never_delivered(two_nodes) -> None:
    d = Dispatcher(["cpu"], "tests.cluster._evals:scripted", "tests.cluster._evals:precheck", rescan_s=0.5)
    try:
        keys = [f"k{i}" for i in range(5)]
        for k in keys:
            d.submit(k, request(f"sleep 1\n# {k}\n"), "cpu")
        got = d.poll(timeout=0.5)
        taken = d.withdraw()
        got += drain(d)
        delivered = [k for k, _, _ in got]
        assert taken, "one actor cannot have started five one-second evaluations in half a second"
        assert set(taken).isdisjoint(delivered) and sorted(taken + delivered) == keys
        assert taken == [k for k in keys if k in taken]      # in submission order
        assert d.in_flight() == set() and d.withdraw() == []
        # a withdrawn key may be sent again, and then it is delivered
        d.submit(taken[0], request("# again\n"), "cpu")
        assert [k for k, _, _ in drain(d)] == [taken[0]]
    finally:
        d.shutdown()


def test_campaign_ends_at_its_time_budget_without_starting_queued_work(two_nodes, tmp_path: Path) -> None:
    (tmp_path / "double.py").write_text("import torch\nclass Model(torch.nn.Module):\n    def forward(self, x):\n"
                                        "        return 2 * x\ndef get_inputs():\n    return [torch.randn(4)]\n"
                                        "def get_init_inputs():\n    return []\n")
    cands = tmp_path / "cands"
    cands.mkdir()
    for i in range(6):
        (cands / f"double__{i}.py").write_text(f"sleep 3\n# candidate {i}\n")    # 18 s of work for one actor
    toml = tmp_path / "c.toml"
    toml.write_text('[campaign]\nname = "budget"\nout = "run"\n[budget]\nmax_evaluations = 6\nmax_minutes = 0.1\n'
                    '[[problems]]\npath = "double.py"\n[[targets]]\nhardware = "cpu"\n'
                    '[[proposers]]\nkind = "files"\ndir = "cands"\nper_generation = 6\n')
    cfg = load_config(toml)
    factory = lambda cfg: Dispatcher(["cpu"], "tests.cluster._evals:scripted", rescan_s=0.5)  # noqa: E731
    out = tmp_path / "run"
    Campaign(cfg, out, dispatcher_factory=factory).run()
    rows = read_population(out).to_pylist() if (out / "population").exists() else []
    logged = [json.loads(line) for line in (out / "logs" / "not_started.jsonl").read_text().splitlines()]
    assert logged, "6 s of budget cannot hold 18 s of work on one actor"
    done = {r["eval_key"] for r in rows}
    assert done.isdisjoint(x["eval_key"] for x in logged) and len(done) + len(logged) == 6
    assert {r["status"] for r in rows} <= {"accepted"}
    assert load_checkpoint(out).in_flight == {}               # nothing left to send again
    # resuming a campaign whose budget is spent starts nothing more
    Campaign(cfg, out, dispatcher_factory=factory).run()
    assert len(read_population(out).to_pylist() if (out / "population").exists() else []) == len(rows)
