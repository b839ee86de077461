"""A driver killed by SIGKILL while writing checkpoints leaves a complete one behind, never a torn file."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from search.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[2]
WRITER = """
import sys
from search.checkpoint import Checkpoint, save_checkpoint
i = 0
while True:
    save_checkpoint(sys.argv[1], Checkpoint(generations={"g": i}, proposer_states={"p": list(range(i % 5000))}))
    if i == 0:
        print("started", flush=True)
    i += 1
"""


def test_sigkill_during_checkpoint_writes(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    last = -1
    for delay in (0.05, 0.2, 0.4):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, env=env)
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"started"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ck = load_checkpoint(tmp_path)
        assert ck is not None
        i = ck.generations["g"]
        assert ck.proposer_states["p"] == list(range(i % 5000))
        last = i
    assert last >= 0
    from search.checkpoint import Checkpoint, save_checkpoint
    save_checkpoint(tmp_path, Checkpoint())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.backup.json", "checkpoint.json"]
