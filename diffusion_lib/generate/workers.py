"""Scale-out: which indices this process owns, and the process group used to sync."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import torch


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
        # NCCL reduces CUDA tensors only; gloo reduces CPU tensors
        self.device = device if device.type == "cuda" else torch.device("cpu")
        if self.active and not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend, timeout=timedelta(hours=2))
            self.owned = True

    def sum(self, values: Sequence[int]) -> list[int]:
        """All-reduce ``values`` over the ranks (returns them as-is with one process)."""
        if not self.active:
            return [int(v) for v in values]
        tensor = torch.tensor(list(values), dtype=torch.int64, device=self.device)
        self.dist.all_reduce(tensor)
        return [int(v) for v in tensor.cpu().tolist()]

    def close(self) -> None:
        if self.owned:
            self.dist.destroy_process_group()
