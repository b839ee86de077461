"""The campaign loop without Ray: a slow evaluation does not keep the proposers from feeding the free device, every
candidate is recorded once with its device and times, and the throughput figures follow from them."""
from __future__ import annotations

import json
from pathlib import Path

from _scripted import scripted

from search.campaign import Campaign
from search.checkpoint import load_checkpoint
from search.config import load_config
from search.local_dispatch import LocalDispatcher
from search.population import read_population
from search.status import campaign_status

PROBLEM = ("import torch\nclass Model(torch.nn.Module):\n    def forward(self, x):\n        return 2 * x\n"
           "def get_inputs():\n    return [torch.randn(4)]\ndef get_init_inputs():\n    return []\n")


def _campaign(tmp: Path, n_quick: int) -> Path:
    (tmp / "double.py").write_text(PROBLEM)
    cands, done = tmp / "cands", tmp / "done"
    cands.mkdir()
    done.mkdir()
    # the files proposer hands them out in name order, one per ask: the slow one is in the first batch
    (cands / "double__00.py").write_text(f"wait-for-files {done} {n_quick}\n")
    for i in range(1, n_quick + 1):
        (cands / f"double__{i:02d}.py").write_text(f"sleep 0.02\ntouch {done}/{i}\n")
    toml = tmp / "c.toml"
    toml.write_text(f'[campaign]\nname = "steady"\nout = "run"\n[budget]\nmax_evaluations = {n_quick + 1}\n'
                    'max_minutes = 5\n[[problems]]\npath = "double.py"\n[[targets]]\nhardware = "cpu"\n'
                    '[[proposers]]\nkind = "files"\ndir = "cands"\nper_generation = 1\n')
    return toml


def test_a_slow_evaluation_does_not_stop_the_free_device_from_being_fed(tmp_path: Path) -> None:
    n_quick = 8          # twice what the queue ahead of two devices holds: the rest must be proposed meanwhile
    cfg = load_config(_campaign(tmp_path, n_quick))
    out = tmp_path / "run"
    progress = Campaign(cfg, out, local=True,
                        dispatcher_factory=lambda cfg: LocalDispatcher({"cpu": 2}, scripted)).run()
    rows = read_population(out).to_pylist()
    assert len(rows) == n_quick + 1 and len({r["eval_key"] for r in rows}) == len(rows)
    slow = next(r for r in rows if "wait-for-files" in r["source"])
    # it could only finish while every quick candidate, most proposed after it started, ran on the other device
    assert slow["status"] == "accepted", slow["reason"]
    assert max(r["generation"] for r in rows) > 0          # generations stay as a lineage counter
    assert {r["device_id"] for r in rows} == {"cpu:local:0", "cpu:local:1"}
    assert all(r["started_at"] <= r["ended_at"] for r in rows)
    assert load_checkpoint(out).in_flight == {}
    tp = progress.throughput
    assert tp["evaluations"] == n_quick + 1 and tp["device_evaluations"] == n_quick + 1
    assert set(tp["devices"]) == {"cpu:local:0", "cpu:local:1"}
    assert 0 < tp["busy_fraction"] <= 1 and tp["stages"]["device"]["count"] == n_quick + 1


def test_status_reports_throughput_from_the_journal(tmp_path: Path) -> None:
    cfg = load_config(_campaign(tmp_path, 2))
    out = tmp_path / "run"
    from search.snapshot import write_snapshot
    write_snapshot(cfg)
    Campaign(cfg, out, local=True, dispatcher_factory=lambda cfg: LocalDispatcher({"cpu": 2}, scripted)).run()
    st = json.loads(json.dumps(campaign_status(out), default=str))
    tp = st["throughput"]
    assert tp["evaluations"] == 3 and set(tp["devices"]) == {"cpu:local:0", "cpu:local:1"}
    busy = sum(d["busy_s"] for d in tp["devices"].values())
    assert busy > 0 and tp["evaluations_per_device_hour"] > 0


def test_an_interrupted_campaign_resumes_with_each_candidate_recorded_once(tmp_path: Path) -> None:
    (tmp_path / "double.py").write_text(PROBLEM)
    cands = tmp_path / "cands"
    cands.mkdir()
    for i in range(8):
        (cands / f"double__{i}.py").write_text(f"sleep 0.05\n# {i}\n")
    toml = tmp_path / "c.toml"
    toml.write_text('[campaign]\nname = "resumed"\nout = "run"\n[budget]\nmax_evaluations = 8\nmax_minutes = 5\n'
                    '[[problems]]\npath = "double.py"\n[[targets]]\nhardware = "cpu"\n'
                    '[[proposers]]\nkind = "files"\ndir = "cands"\nper_generation = 1\n')
    cfg, out = load_config(toml), tmp_path / "run"
    factory = lambda cfg: LocalDispatcher({"cpu": 2}, scripted)  # noqa: E731
    seen = []

    def stop_after_two(p) -> None:
        seen.append(p.done)
        if p.done >= 2:
            raise KeyboardInterrupt("stopped by the test")

    try:
        Campaign(cfg, out, local=True, dispatcher_factory=factory, on_progress=stop_after_two).run()
    except KeyboardInterrupt:
        pass
    first = read_population(out).num_rows
    in_flight = load_checkpoint(out).in_flight
    assert 2 <= first < 8 and in_flight, "the interruption left work in flight to send again"
    Campaign(cfg, out, local=True, dispatcher_factory=factory).run()
    keys = read_population(out).column("eval_key").to_pylist()
    assert len(keys) == len(set(keys)) == 8
    assert set(in_flight) <= set(keys)


def test_the_journal_is_compacted_as_the_campaign_runs(tmp_path: Path, monkeypatch) -> None:
    """One part per evaluation would leave a long campaign's journal in thousands of files: every few parts are
    merged into one, and every evaluation is still there exactly once."""
    import search.campaign as campaign_mod
    from search.journal import POPULATION_DIR
    monkeypatch.setattr(campaign_mod, "COMPACT_PARTS", 4)
    n_quick = 13
    (tmp_path / "double.py").write_text(PROBLEM)
    cands = tmp_path / "cands"
    cands.mkdir()
    for i in range(n_quick):
        (cands / f"double__{i:02d}.py").write_text(f"sleep 0.01\n# {i}\n")
    toml = tmp_path / "c.toml"
    toml.write_text(f'[campaign]\nname = "compact"\nout = "run"\n[budget]\nmax_evaluations = {n_quick}\n'
                    'max_minutes = 5\n[[problems]]\npath = "double.py"\n[[targets]]\nhardware = "cpu"\n'
                    '[[proposers]]\nkind = "files"\ndir = "cands"\nper_generation = 2\n')
    out = tmp_path / "run"
    Campaign(load_config(toml), out, local=True, dispatcher_factory=lambda cfg: LocalDispatcher({"cpu": 2},
                                                                                               scripted)).run()
    parts = sorted((out / POPULATION_DIR).glob("part-*.parquet"))
    assert len(parts) < 4 + 3, [p.name for p in parts]      # one merged part and fewer than four since
    rows = read_population(out).to_pylist()
    assert len(rows) == n_quick and len({r["eval_key"] for r in rows}) == n_quick
