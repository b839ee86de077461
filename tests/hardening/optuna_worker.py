"""A campaign driver's Optuna steps, run as its own process by the kill test: propose (ask), checkpoint the state and
the candidates about to be sent, propose again, then wait to be killed before anything is told.

    python optuna_worker.py CAMPAIGN_DIR PROBLEM STATE_IN|- CHECKPOINT READY_FILE
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from proposers import StaticView, get_proposer


def main() -> None:
    campaign, problem, state_in, checkpoint, ready = sys.argv[1:6]
    tuner = get_proposer("optuna", campaign_dir=campaign, seed=1)
    if state_in != "-":
        tuner.set_state(json.loads(Path(state_in).read_text())["state"])
    view = StaticView(problem, "cpu", cores=2, cache_dir=str(Path(campaign) / "cache"))
    sent = tuner.propose(view, 2)
    # the campaign's checkpoint names what is about to be sent, with the proposer's state, before sending it
    tmp = Path(checkpoint + ".tmp")
    tmp.write_text(json.dumps({"state": tuner.get_state(), "in_flight": [c.to_dict() for c in sent]}))
    tmp.replace(checkpoint)
    tuner.propose(view, 2)          # asked after the checkpoint: only the journal knows these trials
    Path(ready).write_text("asked")
    time.sleep(600)


if __name__ == "__main__":
    main()
