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
    "queue_in_background",
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


def _can_fork() -> bool:
    """Workers can be started here: ``fork`` exists and this is not a worker already."""
    return not _WORKER and "fork" in mp.get_all_start_methods()


class _Forked:
    """Jobs started at once in ``processes`` forked workers; :meth:`wait` collects them."""

    def __init__(self, jobs: Sequence[Callable[[], Any]], processes: int):
        context = mp.get_context("fork")
        self.fractions = context.Array("d", len(jobs), lock=False)  # each job's share done
        _JOBS[:] = jobs
        _WORKER["fractions"] = self.fractions  # inherited by the workers forked just below
        try:
            self.pool = context.Pool(min(processes, len(jobs)))
        finally:
            _WORKER.clear()  # the parent is not a worker
            _JOBS.clear()  # each worker has its own copy
        self.pending = [self.pool.apply_async(_run_job, (slot,)) for slot in range(len(jobs))]
        self.pool.close()  # the workers exit once the jobs are done

    def ready(self, slots: Sequence[int] | None = None) -> bool:
        slots = range(len(self.pending)) if slots is None else slots
        return all(self.pending[k].ready() for k in slots)

    def wait(self, bar, slots: Sequence[int] | None = None) -> list[Any]:
        """The results of ``slots`` (default: every job) in order, redrawing ``bar`` (a tqdm
        of total ``len(slots)``) meanwhile. An exception in a job is raised here, with the
        worker's traceback attached."""
        slots = range(len(self.pending)) if slots is None else slots
        try:
            while not self.ready(slots):
                bar.n = round(sum(self.fractions[k] for k in slots), 2)
                bar.refresh()
                time.sleep(0.2)
            results = [self.pending[k].get() for k in slots]
        except BaseException:
            self.pool.terminate()  # interrupted, or a job failed: stop the others
            raise
        if self.ready():
            self.pool.join()  # every job is done: the workers have exited
        bar.n = len(slots)
        bar.refresh()
        return results


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
    if processes == 1 or len(jobs) <= 1 or not _can_fork():
        return [job() for job in jobs]  # no nested pools; each job draws its own bar

    from tqdm.auto import tqdm

    bar_format = "{l_bar}{bar}| {n:.2f}/{total} jobs [{elapsed}<{remaining}]"
    with tqdm(total=len(jobs), desc=desc, disable=not progress, bar_format=bar_format) as bar:
        return _Forked(jobs, processes).wait(bar)


class BackgroundJob(Generic[T]):
    """A job started by :func:`run_in_background`; :meth:`result` waits for it."""

    def __init__(self, desc: str, forked: _Forked | None = None, slot: int = 0):
        self.desc = desc
        self._forked, self._slot = forked, slot
        self._value: Any = None
        self._error: BaseException | None = None

    def _run_here(self, job: Callable[[], T]) -> BackgroundJob[T]:
        try:  # no fork, or already a worker
            self._value = job()
        except Exception as error:  # raised by result(), as a worker's would be
            self._error = error
        return self

    def done(self) -> bool:
        """True once the job has finished (or failed)."""
        return self._forked is None or self._forked.ready([self._slot])

    def result(self, progress: bool = True) -> T:
        """The job's return value, waiting for it under a progress bar if it is still running.
        An exception in the job is raised here."""
        if self._forked is not None:
            from tqdm.auto import tqdm

            bar_format = "{l_bar}{bar}| [{elapsed}<{remaining}]"
            with tqdm(total=1, desc=self.desc, disable=not progress, bar_format=bar_format) as bar:
                try:
                    (self._value,) = self._forked.wait(bar, [self._slot])
                except BaseException as error:  # kept: the job is over either way
                    self._error = error
            self._forked = None
        if self._error is not None:
            raise self._error
        return self._value


def queue_in_background(jobs: dict[str, Callable[[], Any]]) -> dict[str, BackgroundJob]:
    """Start one forked worker process that runs ``jobs`` (name: function of no arguments)
    one after the other, in order, and return at once: one :class:`BackgroundJob` per name,
    whose ``.result()`` waits for that job only.

    The notebook goes on in this process, on the first core, while the jobs use the second.
    The worker runs with one torch thread and reports each job's progress to the bar that
    its ``.result()`` draws. Where ``fork`` does not exist, or inside a worker, the jobs run
    right here, before this function returns.
    """
    if not all(callable(job) for job in jobs.values()):
        raise TypeError("queue_in_background expects functions of no arguments")
    if not _can_fork():
        return {name: BackgroundJob(name)._run_here(job) for name, job in jobs.items()}
    forked = _Forked(list(jobs.values()), processes=1)
    return {name: BackgroundJob(name, forked, slot) for slot, name in enumerate(jobs)}


def run_in_background(job: Callable[[], T], desc: str = "background job") -> BackgroundJob[T]:
    """Start ``job`` (a function of no arguments) in one forked worker process and return at
    once; ``.result()`` waits for its return value (see :func:`queue_in_background`)."""
    return queue_in_background({desc: job})[desc]
