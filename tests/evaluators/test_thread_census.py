"""The audit's thread census counts threads running code from the candidate's file, and only those: a thread a
library started (a progress-bar monitor, a compiler pool) is not the candidate's work."""
import threading
from pathlib import Path

from evaluators.integrity import python_threads, threads_in_code_from


def test_only_threads_with_a_frame_from_the_file_count(tmp_path: Path) -> None:
    cand = tmp_path / "candidate.py"
    cand.write_text("def work(stop, entered):\n    entered.set()\n    stop.wait()\n")
    ns: dict = {}
    exec(compile(cand.read_text(), str(cand), "exec"), ns)
    before = python_threads()
    stop, entered = threading.Event(), threading.Event()
    mine = threading.Thread(target=ns["work"], args=(stop, entered), name="cand-worker")
    library = threading.Thread(target=stop.wait, name="library-monitor")
    mine.start()
    library.start()
    entered.wait()                  # started is not yet inside work: the census runs once it is
    try:
        left = threads_in_code_from(str(cand), before)
        assert [n.split(":")[0] for n in left] == ["cand-worker"]
        # threads alive before the candidate loaded are the harness's own
        assert threads_in_code_from(str(cand), python_threads()) == []
    finally:
        stop.set()
        mine.join()
        library.join()
    assert threads_in_code_from(str(cand), before) == []
