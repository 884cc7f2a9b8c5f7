"""How many CPU threads torch uses in Kamaal's trainer and task processes, and how its idle threads wait.

Light: no torch at import (:mod:`trainer.process` imports this in the GUI process).  :func:`apply_policy`
runs first thing in every trainer/task child (``trainer.process._run_in_child``) and in ``kamaal-train``'s
training commands, *before* anything imports torch, because the OpenMP runtime reads its wait policy
from the environment once, when torch loads it.

Why not torch's defaults.  torch starts one intra-op thread per physical core (``torch.get_num_threads()``
is ``at::intraop_default_num_threads()``: cpuinfo's physical cores, not the CPU affinity, not a
container's quota) and every op is an OpenMP fork-join: the op ends when the *slowest* thread ends.
OpenMP threads that finish early spin instead of sleeping (libgomp, which Linux wheels bundle: about
300,000 spins; Intel/LLVM libomp: ``KMP_BLOCKTIME`` 200 ms).  When other programs (the GUI, the Dataset
page's worker processes, a compile, a second run) hold some of the cores, the OS preempts one of torch's
threads, the others burn their time slices spinning for it, and a step of many small ops — the demo's
— waits a scheduler quantum per op: measured on 2 cores with 2–4 busy processes, the demo's first six
steps went from 22 s to 75 s and to over 200 s (``bench/bench_threads.py``; README ▸ Performance).

The policy (:func:`choose_threads`), in this order:

* ``KAMAAL_THREADS=N`` (a whole number ≥ 1): N threads, CPU or CUDA.  ``KAMAAL_THREADS=torch``: torch's
  own defaults, nothing set (the bench's reference; an escape hatch).
* ``OMP_NUM_THREADS`` set by the user (or a launcher such as ``torchrun``): torch already obeys it; kept.
* Training on CUDA: the thread count stays torch's (the GPU does the work; the CPU threads mostly wait).
* On the CPU: physical cores this process may use (affinity, cgroup quota), divided among the launcher's
  local processes, minus one left for the app (GUI, dataset workers), minus the cores other programs keep
  busy right now (sampled for 0.2 s), at least 1, at most :data:`MAX_THREADS`.  Two cores → 1 thread.

Always, unless ``KAMAAL_THREADS=torch`` or the user set them: ``OMP_WAIT_POLICY=PASSIVE`` (libgomp and
libomp put waiting threads to sleep at once) and ``KMP_BLOCKTIME=0`` (Intel/LLVM OpenMP, used by the
Windows and macOS wheels); one inter-op thread (Kamaal never forks torch work; a pool of idle threads
per process is only more to schedule).  The chosen policy is logged in each run's log.txt.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

THREADS_ENV = "KAMAAL_THREADS"
TORCH_DEFAULTS = "torch"  # KAMAAL_THREADS=torch leaves every torch/OpenMP default alone
MAX_THREADS = 8  # small ops stop scaling long before; the fork-join cost grows with every thread
RESERVED_FOR_APP = 1
LOAD_SAMPLE_S = 0.2
WAIT_ENVIRONMENT = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}


@dataclass(frozen=True)
class ThreadChoice:
    """What :func:`choose_threads` decided: ``threads`` None leaves torch's own count."""

    threads: int | None
    reason: str


def usable_cores() -> int:
    """Physical cores this process may run on: the CPU affinity and a cgroup CPU quota taken into account."""
    import psutil

    logical = psutil.cpu_count(logical=True) or os.cpu_count() or 1
    physical = psutil.cpu_count(logical=False) or logical
    allowed = len(_allowed_cpus() or range(logical))
    cores = allowed * physical / logical  # SMT siblings share a core
    quota = _cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, quota)
    return max(1, round(cores))


def _allowed_cpus() -> list[int] | None:
    try:
        return sorted(os.sched_getaffinity(0))  # Linux
    except AttributeError:
        pass
    try:
        import psutil

        return sorted(psutil.Process().cpu_affinity())  # Windows (macOS has no affinity)
    except (AttributeError, OSError, NotImplementedError):
        return None


def _cgroup_cpu_quota(path: Path = Path("/sys/fs/cgroup/cpu.max")) -> float | None:
    """CPUs a container may use (``docker --cpus``), from cgroup v2's ``cpu.max`` ("max 100000" = no limit)."""
    try:
        quota, period = path.read_text(encoding="ascii").split()[:2]
        return None if quota == "max" else max(1.0, int(quota) / int(period))
    except (OSError, ValueError):
        return None


def busy_cores(seconds: float = LOAD_SAMPLE_S) -> float:
    """How many of this process's CPUs other programs keep busy now (in physical cores), sampled for ``seconds``."""
    import psutil

    per_cpu = psutil.cpu_percent(interval=seconds, percpu=True)
    allowed = _allowed_cpus()
    if allowed is not None:
        per_cpu = [per_cpu[i] for i in allowed if i < len(per_cpu)]
    logical = psutil.cpu_count(logical=True) or len(per_cpu) or 1
    physical = psutil.cpu_count(logical=False) or logical
    return sum(per_cpu) / 100 * physical / logical


def _whole_number(text: str | None) -> int | None:
    try:
        value = int(text or "")
    except ValueError:
        return None
    return value if value >= 1 else None


def choose_threads(environ: Mapping[str, str], *, cuda: bool, cores: int,
                   busy: Callable[[], float] = busy_cores) -> ThreadChoice:
    """The intra-op thread count for a trainer process (the policy in the module docstring).

    ``busy`` is only called when it could change the answer (on the CPU, with more than one thread to give).
    """
    requested = environ.get(THREADS_ENV, "").strip()
    note = ""
    if requested.lower() == TORCH_DEFAULTS:
        return ThreadChoice(None, f"torch's defaults ({THREADS_ENV}=torch)")
    if requested:
        if (count := _whole_number(requested)) is not None:
            return ThreadChoice(count, f"{THREADS_ENV}={count}")
        note = f"; {THREADS_ENV}={requested!r} ignored: not a whole number ≥ 1"
    if _whole_number(environ.get("OMP_NUM_THREADS")) is not None:
        return ThreadChoice(None, f"OMP_NUM_THREADS={environ['OMP_NUM_THREADS']}, as set{note}")
    if cuda:
        return ThreadChoice(None, f"torch's default count: training on CUDA{note}")
    local_processes = _whole_number(environ.get("LOCAL_WORLD_SIZE")) or 1
    share = max(1, cores // local_processes)
    threads = min(MAX_THREADS, share - RESERVED_FOR_APP)
    reason = (f"{cores} physical cores" + (f" / {local_processes} processes" if local_processes > 1 else "")
              + f" − {RESERVED_FOR_APP} for the app")
    if threads > 1 and local_processes == 1:  # sibling ranks start together: their imports are not "load"
        taken = round(busy())
        if share - taken < threads:
            threads = share - taken
            reason += f", {taken} busy with other work"
    return ThreadChoice(max(1, threads), f"{reason}, at most {MAX_THREADS}{note}")


def prepare_environment(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Set the OpenMP wait policy in ``environ`` (the user's values win); before torch is imported.

    Returns what it set.  Nothing with ``KAMAAL_THREADS=torch``.
    """
    if environ.get(THREADS_ENV, "").strip().lower() == TORCH_DEFAULTS:
        return {}
    added = {name: value for name, value in WAIT_ENVIRONMENT.items() if name not in environ}
    environ.update(added)
    return added


_applied: tuple[int, str, bool] | None = None  # (threads chosen, why, wait policy set too late)


def apply_policy() -> str:
    """Apply the thread policy to this process (a trainer or task child, or ``kamaal-train``); returns :func:`describe`.

    Call it before torch is imported: the wait policy only takes effect then (the description says so
    when it came too late).  Imports torch.
    """
    global _applied
    import sys

    late = "torch" in sys.modules
    added = prepare_environment()
    import torch

    choice = choose_threads(os.environ, cuda=torch.cuda.is_available(), cores=usable_cores())
    if choice.threads is not None:
        torch.set_num_threads(choice.threads)
    if os.environ.get(THREADS_ENV, "").strip().lower() != TORCH_DEFAULTS:
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # torch was imported and used before us (in-process callers): keep its pool
            pass
    _applied = (torch.get_num_threads(), choice.reason, late and bool(added))
    return describe()


def describe() -> str:
    """The threads this process runs with and why, for log.txt; says so when :func:`apply_policy` never ran."""
    import torch

    threads = torch.get_num_threads()
    wait = os.environ.get("OMP_WAIT_POLICY", "OpenMP's default (spinning)")
    if _applied is None:
        why = "no Kamaal thread policy in this process"
    else:
        chosen, why, late = _applied
        if threads != chosen:
            why = f"set by the job; the policy chose {chosen}: {why}"
        if late:
            wait += " (set after torch was loaded: not in effect)"
    return (f"CPU threads: {threads} ({why}); inter-op threads: {torch.get_num_interop_threads()}; "
            f"OpenMP wait policy: {wait}")
