"""Run independent training jobs side by side, in worker processes, under one progress bar.

The book's populations (10 seeds trained as one batched network) keep one core busy. A
reader on Colab has two, so the long cells split their work into independent jobs (two
halves of the seeds, or the two agents being compared) and run them in two processes:
about twice as fast, and, unlike a second torch thread, not slower when another program
shares the machine (two threads of one small matmul wait on each other; two processes
just take turns).

Workers are forked, so a job can be any callable, a lambda from a notebook included. Where
``fork`` does not exist (Windows), the jobs run one after the other in this process.

Training loops draw their bar with :func:`progress_bar` instead of ``tqdm`` directly: in
the main process it *is* ``tqdm.auto.tqdm``; inside a worker it reports the job's fraction
done to the parent, which draws one bar for all the jobs.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

__all__ = [
    "BackgroundJob",
    "default_processes",
    "progress_bar",
    "run_in_background",
    "run_parallel",
    "split_seeds",
]

T = TypeVar("T")

# Set in a worker process only: the shared array of per-job fractions and this job's slot.
_WORKER: dict[str, Any] = {}
# The jobs of the run in progress; forked workers inherit them, so nothing is pickled.
_JOBS: list[Callable[[], Any]] = []


def default_processes() -> int:
    """Two workers where the machine has at least two cores (Colab has two), else one."""
    return max(1, min(2, os.cpu_count() or 1))


class _WorkerBar:
    """The part of tqdm's interface the training loops use, reporting to the parent."""

    def __init__(self, iterable: Iterable | None = None, total: float | None = None):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total = total
        self.n = 0

    def __iter__(self):
        for item in self.iterable or ():
            yield item
            self.update(1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def update(self, n: float = 1) -> None:
        self.n += n
        if self.total:
            _WORKER["fractions"][_WORKER["slot"]] = min(self.n / self.total, 1.0)

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def set_description(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(iterable: Iterable | None = None, **kwargs: Any):
    """``tqdm.auto.tqdm(iterable, **kwargs)``, or its stand-in inside a worker."""
    if _WORKER:  # reports even when disabled: the parent's bar is what the reader sees
        return _WorkerBar(iterable, kwargs.get("total"))
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)


def split_seeds(seeds: Sequence[int], groups: int) -> list[list[int]]:
    """``seeds`` cut into ``groups`` runs of consecutive seeds, as even as possible
    (fewer groups when there are fewer seeds): [0..9] in 2 -> [0..4], [5..9]."""
    seeds = [int(s) for s in seeds]
    groups = max(1, min(int(groups), len(seeds)))
    size, extra = divmod(len(seeds), groups)
    bounds = [k * size + min(k, extra) for k in range(groups + 1)]
    return [seeds[a:b] for a, b in zip(bounds, bounds[1:])]


def _run_job(slot: int) -> Any:
    from rldebug.utils import configure_torch

    configure_torch(1)  # one thread per worker: the workers are the parallelism
    _WORKER["slot"] = slot
    result = _JOBS[slot]()
    _WORKER["fractions"][slot] = 1.0
    return result


def run_parallel(
    jobs: Sequence[Callable[[], T]],
    *,
    processes: int | None = None,
    desc: str = "jobs",
    progress: bool = True,
) -> list[T]:
    """Call every job (a function of no arguments) and return the results, in order.

    ``processes`` workers (default :func:`default_processes`) each run one job at a time,
    with one torch thread. The jobs must be independent of each other: each gets a copy of
    this process's memory at the start, and only its return value comes back (pickled).
    An exception in a job is raised here, with the worker's traceback attached.
    """
    jobs = list(jobs)
    if not all(callable(job) for job in jobs):
        raise TypeError("run_parallel expects a list of functions of no arguments")
    processes = default_processes() if processes is None else int(processes)
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    if _WORKER or processes == 1 or len(jobs) <= 1 or "fork" not in mp.get_all_start_methods():
        return [job() for job in jobs]  # no nested pools; each job draws its own bar

    from tqdm.auto import tqdm

    context = mp.get_context("fork")
    fractions = context.Array("d", len(jobs), lock=False)
    _JOBS[:] = jobs
    bar = tqdm(
        total=len(jobs),
        desc=desc,
        disable=not progress,
        bar_format="{l_bar}{bar}| {n:.2f}/{total} jobs [{elapsed}<{remaining}]",
    )
    try:
        _WORKER["fractions"] = fractions  # inherited by the workers forked just below
        try:
            pool = context.Pool(min(processes, len(jobs)))
        finally:
            _WORKER.clear()  # the parent is not a worker
        with pool:
            pending = [pool.apply_async(_run_job, (slot,)) for slot in range(len(jobs))]
            while not all(p.ready() for p in pending):
                time.sleep(0.2)
                bar.n = round(sum(fractions), 2)
                bar.refresh()
            results = [p.get() for p in pending]  # re-raises a job's exception
        bar.n = len(jobs)
        bar.refresh()
    finally:
        bar.close()
        _JOBS.clear()
    return results


class BackgroundJob(Generic[T]):
    """A job started by :func:`run_in_background`; :meth:`result` waits for it."""

    def __init__(self, job: Callable[[], T], desc: str):
        if not callable(job):
            raise TypeError("run_in_background expects a function of no arguments")
        self.desc = desc
        self._pool = None
        self._value: Any = None
        self._error: BaseException | None = None
        if _WORKER or "fork" not in mp.get_all_start_methods():
            try:  # no nested workers, no fork: run it now, here
                self._value = job()
            except Exception as error:  # raised again by result(), as a worker's would be
                self._error = error
            return
        context = mp.get_context("fork")
        self._fractions = context.Array("d", 1, lock=False)
        _JOBS[:] = [job]
        _WORKER["fractions"] = self._fractions  # inherited by the worker forked just below
        try:
            self._pool = context.Pool(1)
        finally:
            _WORKER.clear()  # the parent is not a worker
            _JOBS.clear()  # the worker has its own copy
        self._pending = self._pool.apply_async(_run_job, (0,))
        self._pool.close()  # the worker exits once the job is done

    def done(self) -> bool:
        """True once the job has finished (or failed)."""
        return self._pool is None or self._pending.ready()

    def result(self, progress: bool = True) -> T:
        """The job's return value, waiting for it under a progress bar if it is still running.
        An exception in the job is raised here."""
        if self._pool is not None:
            from tqdm.auto import tqdm

            with tqdm(total=1.0, desc=self.desc, disable=not progress,
                      bar_format="{l_bar}{bar}| [{elapsed}<{remaining}]") as bar:  # fmt: skip
                while not self._pending.ready():
                    bar.n = round(self._fractions[0], 3)
                    bar.refresh()
                    time.sleep(0.2)
                bar.n = 1.0
            try:
                self._value = self._pending.get()
            except Exception as error:
                self._error = error
            self._pool.join()
            self._pool = None
        if self._error is not None:
            raise self._error
        return self._value


def run_in_background(job: Callable[[], T], desc: str = "background job") -> BackgroundJob[T]:
    """Start ``job`` (a function of no arguments) in one forked worker process and return at
    once; ``.result()`` waits for its return value.

    The notebook goes on in this process, on the first core, while the job uses the second.
    The worker runs with one torch thread and reports its progress to the bar that
    ``.result()`` draws. Where ``fork`` does not exist, or inside a worker, the job runs
    right here, before this function returns.
    """
    return BackgroundJob(job, desc)
