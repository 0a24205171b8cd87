"""Progress bars on stderr for the command line's long steps (reading, folding, ranking).

:func:`progress_bar` returns a :class:`Progress`: a bar drawn with tqdm when tqdm is importable,
else with a small built-in one (one line redrawn with ``\\r``, at most every 0.1 s, cleared when
the step ends).  It draws nothing at all -- not a byte -- when ``quiet`` is set or the stream is
not a terminal (a file, a pipe, a CI log), so scripted runs and their logs stay clean.

A :class:`Progress` is a ``progress(done, total)`` callable, as :meth:`ecomcore.Ranker.topk`
takes, and a context manager::

    with progress_bar("ranking", quiet=args.quiet) as bar:
        ranker.topk(A, k, progress=bar)

    with progress_bar("reading events.csv", total=size, unit="B") as bar:
        for chunk in ...:
            bar.update(done)
"""

from __future__ import annotations

import math
import sys
import time
from typing import IO, Any, Optional

__all__ = ["Progress", "progress_bar", "stream_is_tty"]

_WIDTH = 24  # cells of the built-in bar
_MIN_INTERVAL = 0.1  # seconds between redraws of the built-in bar


def stream_is_tty(stream: Any) -> bool:
    """Whether ``stream`` is an interactive terminal (``isatty()`` true; False on any error).

    Parameters
    ----------
    stream : file-like
        The stream to test.

    Returns
    -------
    bool
    """
    isatty = getattr(stream, "isatty", None)
    if isatty is None:
        return False
    try:
        return bool(isatty())
    except (ValueError, OSError):  # closed or detached stream
        return False


def _tqdm_class() -> Any:
    try:
        from tqdm import tqdm  # type: ignore[import-not-found]
    except ImportError:
        return None
    return tqdm


def _fmt(n: float, unit: str) -> str:
    if unit == "B":
        for scale, name in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if n >= scale:
                return f"{n / scale:.1f} {name}"
        return f"{int(n)} B"
    return f"{int(n):,}"


class Progress:
    """One step's progress indicator on a text stream.

    Parameters
    ----------
    label : str
        What is being done (``"ranking"``, ``"reading events.csv"``).
    total : int, optional
        Units of work in all (rows, bytes); ``None`` shows a counter and the elapsed time.
    stream : file-like, optional
        Where to draw; default ``sys.stderr`` (looked up when the bar is made).
    enabled : bool, default True
        False makes every method a no-op (nothing is written).
    use_tqdm : bool, optional
        Draw with tqdm (True), with the built-in bar (False), or with tqdm when importable
        (None, the default).
    unit : str, default ""
        ``"B"`` formats counts as bytes; anything else as plain counts.

    Notes
    -----
    Use :func:`progress_bar`, which disables the bar when quiet or not on a terminal.
    """

    def __init__(
        self,
        label: str,
        total: Optional[int] = None,
        *,
        stream: Optional[IO[str]] = None,
        enabled: bool = True,
        use_tqdm: Optional[bool] = None,
        unit: str = "",
    ) -> None:
        self.label = str(label)
        self.total = None if total is None else max(int(total), 0)
        self.stream = sys.stderr if stream is None else stream
        self.enabled = bool(enabled)
        self.unit = unit
        self.done = 0
        self._t0 = time.perf_counter()
        self._last_draw = -math.inf  # the first update always draws (perf_counter may be < 1 h)
        self._drawn = 0  # characters of the built-in line on screen
        self._closed = False
        self._bar: Any = None
        if self.enabled:
            cls = _tqdm_class() if use_tqdm in (None, True) else None
            if use_tqdm and cls is None:
                raise ImportError("use_tqdm=True but tqdm is not installed")
            if cls is not None:
                self._bar = cls(
                    total=self.total,
                    desc=self.label,
                    file=self.stream,
                    leave=False,
                    unit="B" if unit == "B" else "it",
                    unit_scale=unit == "B",
                    dynamic_ncols=True,
                )

    # -- updating ------------------------------------------------------------------------------
    def update(self, done: int, total: Optional[int] = None) -> None:
        """Set the work done so far (absolute, not an increment).

        Parameters
        ----------
        done : int
            Units done.
        total : int, optional
            A new total (e.g. learnt after the bar was made).
        """
        if not self.enabled or self._closed:
            return
        if total is not None and total != self.total:
            self.total = max(int(total), 0)
            if self._bar is not None:
                self._bar.total = self.total
                self._bar.refresh()
        self.done = int(done)
        if self._bar is not None:
            self._bar.update(self.done - self._bar.n)
            return
        now = time.perf_counter()
        finished = self.total is not None and self.done >= self.total
        if finished or now - self._last_draw >= _MIN_INTERVAL:
            self._last_draw = now
            self._draw(now)

    __call__ = update

    def _draw(self, now: float) -> None:
        elapsed = now - self._t0
        if self.total:
            frac = min(max(self.done / self.total, 0.0), 1.0)
            cells = int(frac * _WIDTH)
            bar = "#" * cells + "." * (_WIDTH - cells)
            text = (
                f"{self.label}: [{bar}] {frac:4.0%} {_fmt(self.done, self.unit)}/{_fmt(self.total, self.unit)} "
                f"{elapsed:.1f}s"
            )
        else:
            text = f"{self.label}: {_fmt(self.done, self.unit)} {elapsed:.1f}s"
        pad = " " * max(self._drawn - len(text), 0)
        self._write("\r" + text + pad)
        self._drawn = len(text)

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (ValueError, OSError):  # the terminal went away: stop drawing
            self.enabled = False

    # -- finishing -----------------------------------------------------------------------------
    def close(self) -> None:
        """Remove the bar from the terminal (idempotent)."""
        if not self.enabled or self._closed:
            self._closed = True
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self._drawn:
            self._write("\r" + " " * self._drawn + "\r")
            self._drawn = 0

    @property
    def elapsed(self) -> float:
        """Seconds since the bar was made."""
        return time.perf_counter() - self._t0

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress_bar(
    label: str,
    total: Optional[int] = None,
    *,
    quiet: bool = False,
    stream: Optional[IO[str]] = None,
    use_tqdm: Optional[bool] = None,
    unit: str = "",
) -> Progress:
    """A progress bar on ``stream`` (stderr), or a silent one when quiet or not a terminal.

    Parameters
    ----------
    label : str
        What is being done.
    total : int, optional
        Units of work in all; ``None`` shows a counter.
    quiet : bool, default False
        Draw nothing (the command line's ``--quiet``).
    stream : file-like, optional
        Default ``sys.stderr``.
    use_tqdm : bool, optional
        See :class:`Progress`.
    unit : str, default ""
        ``"B"`` for bytes.

    Returns
    -------
    Progress
        Enabled only when not ``quiet`` and ``stream.isatty()`` is true.
    """
    stream = sys.stderr if stream is None else stream
    enabled = not quiet and stream_is_tty(stream)
    return Progress(label, total, stream=stream, enabled=enabled, use_tqdm=use_tqdm if enabled else False, unit=unit)
