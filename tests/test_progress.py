"""Tests for ecomcore.progress: the built-in bar, the tqdm path, and silence off a terminal."""

import io
import sys
import types

import pytest

import ecomcore.progress as progress
from ecomcore.progress import Progress, progress_bar, stream_is_tty


class FakeTTY(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self):
        return True


class NoTTY(io.StringIO):
    def isatty(self):
        return False


@pytest.fixture
def no_tqdm(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # "import tqdm" raises ImportError


@pytest.fixture
def no_throttle(monkeypatch):
    monkeypatch.setattr(progress, "_MIN_INTERVAL", 0.0)


def test_builtin_bar_draws_and_clears(no_tqdm, no_throttle):
    s = FakeTTY()
    with progress_bar("ranking", 200, stream=s) as bar:
        assert bar.enabled
        bar.update(50)
        assert s.getvalue().endswith("s")
        assert "\rranking: [######..................]  25% 50/200 " in s.getvalue()
        bar(200, 200)  # the Ranker.topk(progress=) call form
        assert "[########################] 100% 200/200" in s.getvalue()
        drawn = len(s.getvalue().split("\r")[-1])
    # closing erases the line: spaces over it, then back to the start
    assert s.getvalue().endswith("\r" + " " * drawn + "\r")
    before = s.getvalue()
    bar.update(10)  # after close: nothing
    bar.close()  # idempotent
    assert s.getvalue() == before


def test_builtin_bar_shorter_line_is_padded(no_tqdm, no_throttle):
    s = FakeTTY()
    bar = Progress("x", None, stream=s, use_tqdm=False)
    bar.update(123_456)
    first = s.getvalue().split("\r")[-1]
    assert first.startswith("x: 123,456 ")
    bar.update(7)
    second = s.getvalue().split("\r")[-1]
    assert second.startswith("x: 7 ") and len(second) >= len(first)  # the old text is overwritten
    bar.close()


def test_bytes_and_new_total(no_tqdm, no_throttle):
    s = FakeTTY()
    bar = progress_bar("reading f.csv", unit="B", stream=s)
    bar.update(3 * 2**20, total=4 * 2**20)
    assert "75% 3.0 MiB/4.0 MiB" in s.getvalue()
    bar.update(4 * 2**20)
    assert "100% 4.0 MiB/4.0 MiB" in s.getvalue()
    bar.close()


@pytest.mark.parametrize("clock_start", [0.0, 5.0, 1e6])
def test_throttled(no_tqdm, monkeypatch, clock_start):
    # perf_counter's origin is arbitrary (often the boot time): the first update must draw
    # even when the clock reads less than the redraw interval
    monkeypatch.setattr(progress, "_MIN_INTERVAL", 3600.0)
    clock = iter(clock_start + 0.001 * k for k in range(1000))
    monkeypatch.setattr(progress, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    s = FakeTTY()
    bar = progress_bar("r", 10, stream=s)
    for i in range(1, 10):
        bar.update(i)
    assert s.getvalue().count("\r") == 1  # only the first update drew
    bar.update(10)  # the end is always drawn
    assert "100% 10/10" in s.getvalue()
    bar.close()


@pytest.mark.parametrize("stream_cls, quiet", [(NoTTY, False), (FakeTTY, True), (io.StringIO, False)])
def test_silent_when_quiet_or_not_a_tty(stream_cls, quiet, no_tqdm, no_throttle):
    s = stream_cls()
    with progress_bar("ranking", 10, quiet=quiet, stream=s) as bar:
        assert not bar.enabled
        for i in range(11):
            bar(i, 10)
    assert s.getvalue() == ""


def test_default_stream_is_stderr_at_call_time(monkeypatch, no_tqdm, no_throttle):
    fake = FakeTTY()
    monkeypatch.setattr(sys, "stderr", fake)
    with progress_bar("step", 2) as bar:
        bar.update(1)
    assert "step: [" in fake.getvalue()


def test_stream_is_tty():
    assert stream_is_tty(FakeTTY()) and not stream_is_tty(NoTTY())
    assert not stream_is_tty(object())

    class Closed:
        def isatty(self):
            raise ValueError("I/O operation on closed file")

    assert not stream_is_tty(Closed())


def test_broken_terminal_stops_drawing(no_tqdm, no_throttle):
    class Broken(FakeTTY):
        def write(self, s):
            raise OSError("gone")

    bar = progress_bar("x", 5, stream=Broken())
    bar.update(1)  # no exception
    assert not bar.enabled
    bar.update(2)
    bar.close()


def test_tqdm_used_when_importable(monkeypatch):
    made = []

    class FakeTqdm:
        def __init__(self, total=None, desc=None, file=None, leave=True, **kw):
            self.total, self.desc, self.file, self.leave, self.n, self.closed = total, desc, file, leave, 0, False
            made.append(self)

        def update(self, n):
            self.n += n

        def refresh(self):
            pass

        def close(self):
            self.closed = True

    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(tqdm=FakeTqdm))
    s = FakeTTY()
    with progress_bar("ranking", 30, stream=s) as bar:
        bar(10, 30)
        bar(30, 30)
    assert len(made) == 1
    t = made[0]
    assert (t.total, t.desc, t.file, t.leave, t.n, t.closed) == (30, "ranking", s, False, 30, True)
    assert s.getvalue() == ""  # tqdm draws, not the built-in bar
    # not a terminal: tqdm is not even created
    with progress_bar("ranking", 30, stream=NoTTY()) as bar:
        bar(30, 30)
    assert len(made) == 1


def test_use_tqdm_true_without_tqdm(no_tqdm):
    with pytest.raises(ImportError, match="tqdm"):
        Progress("x", 1, stream=FakeTTY(), use_tqdm=True)


def test_demo_draws_bars_only_on_a_tty(monkeypatch, capsys, no_tqdm, no_throttle):
    from ecomcore.cli import main

    small = ["demo", "--users", "100", "--tags", "50", "--merchants", "100", "--show", "0", "--no-scipy"]
    fake = FakeTTY()
    monkeypatch.setattr(sys, "stderr", fake)
    assert main(small) == 0
    err = fake.getvalue()
    for label in ("generating behaviour", "folding behaviour", "folding merchant events", "ranking"):
        assert f"{label}: [" in err
    capsys.readouterr()
    fake2 = FakeTTY()
    monkeypatch.setattr(sys, "stderr", fake2)
    assert main([*small, "--quiet"]) == 0
    assert fake2.getvalue() == ""
