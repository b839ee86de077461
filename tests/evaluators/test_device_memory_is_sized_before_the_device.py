"""An evaluation's share of a shared GPU's memory is known before its reference touches the device: sized on the
meta device from the problem alone (weights, inputs and outputs, as a real run would measure them), then from the
first real run; a problem that cannot run on meta gets a conservative share."""
from __future__ import annotations

from pathlib import Path

import pytest

from evaluators import device_memory
from evaluators.judge import build_reference

ROOT = Path(__file__).resolve().parents[2]
KB = ROOT.parent / "shared" / "kernelbench" / "v0"
PROBLEMS = [ROOT / "experiments/problems/level1/batched_matmul.py",
            ROOT / "experiments/problems/level1/avg_pool2d.py",
            *sorted((KB / "level2").glob("1_*.py"))[:1], *sorted((KB / "level3").glob("1_*.py"))[:1]]


@pytest.mark.parametrize("path", [p for p in PROBLEMS if p.exists()], ids=lambda p: p.stem)
def test_the_meta_size_is_what_a_real_run_holds(path: Path) -> None:
    ref = build_reference(str(path), "default", "cpu", seed=1)
    real = sum(v.numel() * v.element_size() for v in ref.state_dict.values()) + ref.in_bytes + ref.out_bytes
    assert device_memory.on_meta(str(path), "default") == real


def test_a_problem_that_moves_its_own_tensors_is_unknown_and_gets_half_the_capacity(tmp_path: Path) -> None:
    path = tmp_path / "moves.py"
    path.write_text("import torch\n\nclass Model(torch.nn.Module):\n    def forward(self, x):\n"
                    "        return x.cpu() * 2\n\n\ndef get_inputs():\n    return [torch.randn(4, 4).to('cpu')]\n\n\n"
                    "def get_init_inputs():\n    return []\n")
    assert device_memory.on_meta(str(path), "default") is None
    assert device_memory.need_bytes(None, 1000) == 500
    assert device_memory.need_bytes(10, 1000) == 10 * device_memory.DEVICE_DATA_MULTIPLE \
        + device_memory.CHILD_CONTEXT_BYTES


def test_a_measured_size_wins_over_the_meta_estimate(tmp_path: Path) -> None:
    path = str(ROOT / "experiments/problems/level1/batched_matmul.py")
    device_memory.remember(path, "default", "cuda:9", 12345)
    try:
        assert device_memory.data_bytes(path, "default", "cuda:9") == 12345
        assert device_memory.data_bytes(path, "default", "cpu") == device_memory.on_meta(path, "default")
    finally:
        device_memory._MEASURED.clear()
