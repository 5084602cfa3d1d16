"""Scale-out: which indices this process owns, and the process group used to sync.

The processes of a run meet once, at the start (``torch.distributed``'s rendezvous at
``MASTER_ADDR:MASTER_PORT``). A process whose peers never start waits at most
``DIFFUSION_LIB_DIST_TIMEOUT`` seconds (default :data:`DEFAULT_DIST_TIMEOUT_S`), says
after a few seconds what it is waiting for, and then gives up with
:class:`PeerTimeout`. Once all have met, the syncs between them (the last one waits
until every rank has made its share) may take up to :data:`SYNC_TIMEOUT`.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch

DIST_TIMEOUT_ENV = "DIFFUSION_LIB_DIST_TIMEOUT"
DEFAULT_DIST_TIMEOUT_S = 300.0
"""How long a process waits for the others to start (seconds), unless
``DIFFUSION_LIB_DIST_TIMEOUT`` says otherwise."""
MAX_DIST_TIMEOUT_S = 7 * 24 * 3600.0
SYNC_TIMEOUT = timedelta(hours=2)
"""How long a rank that has made its share waits for the slowest one."""
NOTICE_AFTER_S = 10.0
"""A rank still waiting for its peers after this long says what it waits for."""


class PeerTimeout(RuntimeError):
    """The other processes of a distributed run did not start within the timeout."""


def dist_timeout() -> float:
    """``DIFFUSION_LIB_DIST_TIMEOUT`` in seconds (default 300), or a ``ValueError``."""
    text = os.environ.get(DIST_TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_DIST_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= MAX_DIST_TIMEOUT_S):
        raise ValueError(
            f"{DIST_TIMEOUT_ENV} must be a number of seconds in (0, {MAX_DIST_TIMEOUT_S:.0f}] "
            f"(how long a process waits for the others to start), got {text!r}"
        )
    return value


@dataclass(frozen=True)
class Workers:
    """Which share of the indices this process owns: ``i % world_size == rank``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Workers:
        """Read ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` as set by ``torchrun``."""
        try:
            rank = int(os.environ.get("RANK", "0"))
            world = int(os.environ.get("WORLD_SIZE", "1"))
            local = int(os.environ.get("LOCAL_RANK", str(rank)))
        except ValueError as err:
            raise ValueError(f"RANK / WORLD_SIZE / LOCAL_RANK must be integers ({err})") from None
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"need 0 <= RANK < WORLD_SIZE, got RANK={rank}, WORLD_SIZE={world}")
        unset = [k for k in ("MASTER_ADDR", "MASTER_PORT") if world > 1 and not os.environ.get(k)]
        if unset:
            raise ValueError(
                f"WORLD_SIZE={world} but {' and '.join(unset)} {'is' if len(unset) == 1 else 'are'}"
                " not set: start several processes with torchrun (it sets them), or unset "
                "WORLD_SIZE / RANK for one process"
            )
        if world > 1:
            port = os.environ["MASTER_PORT"].strip()
            if not (port.isdigit() and 1 <= int(port) <= 65535):
                raise ValueError(f"MASTER_PORT must be a port number 1-65535, got {port!r}")
            dist_timeout()  # a bad value is a bad argument, found before anything is done
        return cls(rank, world, local)

    def owns(self, index: int) -> bool:
        return index % self.world_size == self.rank


class _ProcessGroup:
    """A process group used only to sync (an all-reduce doubles as a barrier)."""

    def __init__(self, workers: Workers, device: torch.device) -> None:
        import torch.distributed as dist

        self.dist = dist
        self.active = workers.world_size > 1
        self.owned = False
        self.group: Any = None  # None: the default group
        # NCCL reduces CUDA tensors only; gloo reduces CPU tensors
        self.device = device if device.type == "cuda" else torch.device("cpu")
        if self.active and not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            self.group = _meet(workers, backend)
            self.owned = True

    def sum(self, values: Sequence[int]) -> list[int]:
        """All-reduce ``values`` over the ranks (returns them as-is with one process)."""
        if not self.active:
            return [int(v) for v in values]
        tensor = torch.tensor(list(values), dtype=torch.int64, device=self.device)
        self.dist.all_reduce(tensor, group=self.group)
        return [int(v) for v in tensor.cpu().tolist()]

    def close(self) -> None:
        if self.owned:
            self.dist.destroy_process_group()


def _where() -> str:
    return f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"


def _wait_for_port(deadline: float) -> str | None:
    """Until ``deadline``, wait in Python (Ctrl-C works) for rank 0's address to accept
    connections, so that torch's own client does not log a retry trace every few seconds.
    ``None`` once it does; the last connection error if it never did."""
    host, port = os.environ.get("MASTER_ADDR", ""), int(os.environ.get("MASTER_PORT", "0"))
    while True:
        try:
            socket.create_connection((host, port), timeout=1.0).close()
            return None
        except OSError as err:
            if time.monotonic() >= deadline:
                return f"{type(err).__name__}: {err.strerror or err}"
            time.sleep(0.2)


def _meet(workers: Workers, backend: str) -> object | None:
    """``init_process_group`` with a bounded wait for the other ranks, a notice on stderr if
    the wait lasts, and :class:`PeerTimeout` naming what never came. Returns the group
    the syncs use (``None``: the default group)."""
    import torch.distributed as dist

    timeout = dist_timeout()
    others = workers.world_size - 1
    waited = (
        f"the other {others} process{'es' if others > 1 else ''} of "
        f"WORLD_SIZE={workers.world_size} at {_where()}"
    )
    notice = threading.Timer(
        NOTICE_AFTER_S,
        lambda: print(
            f"rank {workers.rank} is waiting for {waited} (giving up after "
            f"{timeout:g} s; {DIST_TIMEOUT_ENV} sets it)",
            file=sys.stderr,
            flush=True,
        ),
    )
    notice.daemon = True
    notice.start()
    start = time.monotonic()

    def gave_up(reason: str) -> PeerTimeout:
        return PeerTimeout(
            f"rank {workers.rank} gave up after {time.monotonic() - start:.0f} s waiting for "
            f"{waited} ({reason[:200]}). Start every rank (torchrun does), or set "
            f"{DIST_TIMEOUT_ENV} (now {timeout:g} s) to wait longer"
        )

    try:
        if workers.rank != 0 and (refused := _wait_for_port(start + timeout)) is not None:
            raise gave_up(f"rank 0 never listened: {refused}")
        left = max(1.0, timeout - (time.monotonic() - start))
        dist.init_process_group(backend, timeout=timedelta(seconds=left))
    except PeerTimeout:
        raise
    except RuntimeError as err:  # torch.distributed.DistError and its kin
        first = " ".join(str(err).strip().split("\n", 1)[0].split())
        raise gave_up(f"{type(err).__name__}: {first}") from None
    finally:
        notice.cancel()
    return _sync_group(dist)


def _sync_group(dist: Any) -> object | None:
    """Let the syncs after the meeting wait up to :data:`SYNC_TIMEOUT` for a slow rank: the
    default group with its timeout raised, or (without that private hook) a new group."""
    from torch.distributed import distributed_c10d as c10d

    setter = getattr(c10d, "_set_pg_timeout", None)
    if setter is not None:
        try:
            setter(SYNC_TIMEOUT)
            return None
        except (RuntimeError, ValueError, AttributeError, TypeError):
            pass
    return dist.new_group(timeout=SYNC_TIMEOUT)
