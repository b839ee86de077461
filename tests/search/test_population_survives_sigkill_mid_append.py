"""A writer killed by SIGKILL at any moment leaves only complete parts, and every acknowledged append is kept."""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from search.population import Population

REPO = Path(__file__).resolve().parents[2]
WRITER = """
import os, sys
from popdata import row
from search.population import Population
pop = Population.open(sys.argv[1], writer=True)
i = 0
while True:
    pop.append([row(f"{os.getpid()}-{i}-{j}") for j in range(10)])
    print(f"{os.getpid()}-{i}", flush=True)
    i += 1
"""


def test_sigkill_at_random_moments_loses_no_acknowledged_append(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(Path(__file__).parent)])}
    rng = random.Random(0)
    acknowledged: list[str] = []
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE,
                                text=True, env=env)
        assert proc.stdout is not None
        acknowledged.append(proc.stdout.readline().strip())   # wait until it is really writing
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        acknowledged += out.split()
    for part in (tmp_path / "population").glob("part-*.parquet"):
        assert pq.ParquetFile(part).metadata.num_rows == 10
    pop = Population.open(tmp_path, writer=True)   # the lock died with the last writer
    assert not list((tmp_path / "population").glob(".*.tmp"))
    tags = set(pop.table.column("source").to_pylist())
    assert len(pop) % 10 == 0
    for batch in acknowledged:
        assert any(f"# {batch}-0\n" in s for s in tags), batch
    assert len(pop) == len(set(pop.table.column("eval_key").to_pylist()))
