"""SIGTERM, as sent by `timeout` or a batch scheduler, unwinds a campaign like Ctrl-C; the handler it replaced
comes back afterwards."""
import os
import signal
import threading
import time

import pytest

from search.campaign import _sigterm_as_interrupt


def test_sigterm_raises_keyboard_interrupt_until_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    old = _sigterm_as_interrupt()
    try:
        assert old is before
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)          # the handler runs as soon as the signal arrives, ending the sleep
    finally:
        signal.signal(signal.SIGTERM, old)
    assert signal.getsignal(signal.SIGTERM) is before


def test_off_the_main_thread_nothing_is_installed() -> None:
    got = []
    t = threading.Thread(target=lambda: got.append(_sigterm_as_interrupt()))
    t.start()
    t.join()
    assert got == [None]
