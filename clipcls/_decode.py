"""Decoding image sources in parallel, in input order, with a bounded read-ahead.

Two ways, one contract: ``Decoder(...)(sources)`` yields ``(name, item,
error)`` per source, in order, holding at most ``window`` sources ahead.

* **processes** (files and bytes, when the encoder's preprocessing is the
  standard resize-and-crop): worker processes decode and crop to uint8
  arrays; the normalisation runs batched in the caller.  Decoding then never
  holds the caller's GIL, which in threads stalled the encoder's forward at
  every op (measured on 2 cores, JPEG files: 55-65% of encoder-only speed with
  threads, 89-95% with processes; ``python benchmarks/pipeline.py``).  A decoder
  that crashes its process costs only the file that crashed it: the pool is
  replaced and the rest of its chunk decoded again one file at a time.
* **threads**: everything else (PIL images in memory, custom transforms) and
  short inputs, where starting processes would cost more than it saves.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np
from PIL import Image

from clipcls._errors import ImageError
from clipcls._images import ImageLimits, ImageSource, describe, load_image

log = logging.getLogger("clipcls")

Row = tuple[str, Any, "str | None"]
CHUNK = 16  # sources per process task: one round trip per file cost more than the decode
MIN_FOR_PROCESSES = 64  # fewer sources than this decode in threads


def crop_uint8(img: Image.Image, size: int, interpolation: int) -> np.ndarray:
    """open_clip's eval geometry: shorter side to ``size`` (longer truncated, as torchvision), centre crop."""
    w, h = img.size
    nw, nh = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
    img = img.convert("RGB").resize((nw, nh), interpolation, reducing_gap=2.0)
    left, top = int(round((nw - size) / 2.0)), int(round((nh - size) / 2.0))
    return np.array(img.crop((left, top, left + size, top + size)), dtype=np.uint8)


def _decode_one(src: ImageSource, geometry: tuple[int, int], limits: ImageLimits) -> Row:
    name = describe(src)
    try:
        img = load_image(src, min_size=geometry[0], limits=limits)
        return name, crop_uint8(img, *geometry), None
    except ImageError as e:
        return name, None, str(e)


def _decode_chunk(chunk: list[ImageSource], geometry: tuple[int, int], limits: ImageLimits) -> list[Row]:
    return [_decode_one(src, geometry, limits) for src in chunk]


class Decoder:
    """Parallel, ordered, bounded decoding; see the module docstring.

    ``geometry`` (size, PIL interpolation) enables the process path; ``preprocess``
    turns a decoded RGB image into the encoder's input on the thread path.
    """

    def __init__(self, *, workers: int, window: int, limits: ImageLimits, min_size: int | None,
                 preprocess: Callable[[Image.Image], Any] | None, geometry: tuple[int, int] | None) -> None:
        self.workers = max(1, workers)
        self.window = max(1, window)
        self.limits = limits
        self.min_size = min_size
        self.preprocess = preprocess
        self.geometry = geometry
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def __call__(self, sources: Iterable[ImageSource]) -> Iterator[Row]:
        it = iter(sources)
        head = []
        for src in it:
            head.append(src)
            if len(head) >= MIN_FOR_PROCESSES:
                break
        use_processes = (self.geometry is not None and len(head) >= MIN_FOR_PROCESSES
                         and not any(isinstance(s, Image.Image) for s in head))
        if use_processes:
            try:
                self._get_pool()
            except (OSError, ValueError, RuntimeError) as e:  # no forkserver here, or no room for processes
                log.warning("clipcls: decoding in threads: cannot start decoder processes (%s)", e)
                self.geometry = None
                use_processes = False
        rest = _chain(head, it)
        return self._processes(rest) if use_processes else self._threads(rest)

    # -- threads ---------------------------------------------------------------------------
    def _thread_work(self, src: ImageSource) -> Row:
        name = describe(src)
        try:
            img = load_image(src, min_size=self.min_size, limits=self.limits)
            return name, (self.preprocess(img) if self.preprocess is not None else img), None
        except ImageError as e:
            return name, None, str(e)

    def _threads(self, sources: Iterator[ImageSource]) -> Iterator[Row]:
        with ThreadPoolExecutor(self.workers) as pool:
            window: deque[Future[Row]] = deque()
            for src in sources:
                window.append(pool.submit(self._thread_work, src))
                if len(window) >= self.window:
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()

    # -- processes -------------------------------------------------------------------------
    def _get_pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = _start_pool(min(self.workers, os.cpu_count() or 1))
            return self._pool

    def _replace_pool(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is broken:
                broken.shutdown(wait=False, cancel_futures=True)
                self._pool = None

    def _submit(self, chunk: list[ImageSource]) -> tuple[list[ImageSource], ProcessPoolExecutor, Future[list[Row]]]:
        pool = self._get_pool()
        return chunk, pool, pool.submit(_decode_chunk, chunk, self.geometry, self.limits)

    def _result(self, chunk: list[ImageSource], pool: ProcessPoolExecutor, fut: Future[list[Row]]) -> list[Row]:
        try:
            return fut.result()
        except BrokenProcessPool:
            self._replace_pool(pool)
        # One file at a time in fresh processes, so only a file that kills its process fails.
        out = []
        for src in chunk:
            _, p, f = self._submit([src])
            try:
                out.extend(f.result())
            except BrokenProcessPool:
                self._replace_pool(p)
                out.append((describe(src), None, f"{describe(src)}: the image decoder crashed on this file"))
        return out

    def _processes(self, sources: Iterator[ImageSource]) -> Iterator[Row]:
        window: deque[tuple[list[ImageSource], ProcessPoolExecutor, Future[list[Row]]]] = deque()
        chunk: list[ImageSource] = []
        for src in sources:
            chunk.append(src)
            if len(chunk) == CHUNK:
                window.append(self._submit(chunk))
                chunk = []
            if len(window) * CHUNK >= self.window:
                yield from self._result(*window.popleft())
        if chunk:
            window.append(self._submit(chunk))
        while window:
            yield from self._result(*window.popleft())

    def close(self) -> None:
        """Stop the worker processes (they also stop with the interpreter)."""
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None


def _noop() -> None:
    return None


def _exit_with(client: int) -> None:
    """Worker initializer: exit when the ``client`` process that owns the pool is gone.

    A pool worker waits on a queue whose write end it holds itself, so it never
    sees the client die; and while it lives, so do the forkserver and the
    resource tracker (it holds their pipes too).  A client killed with SIGKILL
    left all four running for good.
    """
    def watch() -> None:
        try:
            fd = os.pidfd_open(client)  # wakes when the client exits; no polling, no pid reuse
        except (AttributeError, OSError):
            fd = None
        if fd is not None:
            import select

            select.select([fd], [], [])
        else:
            import time

            while _alive(client):
                time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="clipcls-client-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _start_pool(n: int) -> ProcessPoolExecutor:
    """A process pool whose workers are all started now, without importing the caller's script.

    forkserver, because forking a parent that runs torch's thread pools can deadlock.
    But forkserver (like spawn) re-runs the ``__main__`` script in every worker, so a
    user's script without an ``if __name__ == "__main__":`` guard would classify again
    in each worker and break the pool.  The workers need nothing from ``__main__``: it
    is hidden from multiprocessing while they start.
    """
    pool = ProcessPoolExecutor(n, mp_context=mp.get_context("forkserver"), initializer=_exit_with,
                               initargs=(os.getpid(),))
    main = sys.modules["__main__"]
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    try:
        main.__dict__.pop("__file__", None)
        main.__spec__ = None  # type: ignore[assignment]
        # Submitted back to back, one task per worker starts every worker while __main__ is
        # hidden (no worker can be idle yet: each takes ~0.3 s to start).
        for f in [pool.submit(_noop) for _ in range(n)]:
            f.result()
        started = len(getattr(pool, "_processes", None) or {})
        if started < n:  # never seen; but a worker started later would run the script
            pool.shutdown(wait=False)
            raise OSError(f"only {started} of {n} decoder processes started")
    finally:
        main.__dict__.update(saved)
        if "__spec__" not in saved:
            main.__dict__.pop("__spec__", None)
    return pool


def _chain(head: list[ImageSource], rest: Iterator[ImageSource]) -> Iterator[ImageSource]:
    yield from head
    yield from rest
