"""A replay buffer of whole transitions, preallocated on one device.

``Replay(capacity, spec, device)`` holds one tensor per field of ``spec``
(``{"obs": (7,), "action": (2,), "reward": (), ...}``), each of shape
``(capacity, *shape)``, written as a ring.  ``add`` writes a batch of
transitions in one indexed assignment per field; ``sample`` draws indices
uniformly with the caller's ``torch.Generator`` (CPU-side, so the draw is the
same on every device) and gathers every field at once.  ``state_dict`` holds
only the filled part, so a checkpoint of a half-empty buffer stays small, and
``load_state_dict`` restores it exactly (a resumed run samples what the killed
one would have).
"""

from __future__ import annotations

import torch


class Replay:
    def __init__(self, capacity: int, spec: dict[str, tuple], device="cpu",
                 dtype: torch.dtype = torch.float32):
        self.capacity = int(capacity)
        self.device = torch.device(device)
        self.spec = {k: tuple(v) for k, v in spec.items()}
        self.data = {k: torch.zeros((self.capacity, *shape), dtype=dtype, device=self.device)
                     for k, shape in self.spec.items()}
        self.ptr = 0    # next slot to write
        self.size = 0   # filled slots

    def __len__(self) -> int:
        return self.size

    def add(self, **batch: torch.Tensor) -> None:
        """Append ``n`` transitions: every field of ``spec``, each with a leading
        dimension ``n`` (the oldest are overwritten once the ring is full)."""
        if set(batch) != set(self.spec):
            raise KeyError(f"replay fields {sorted(self.spec)}, got {sorted(batch)}")
        n = next(iter(batch.values())).shape[0]
        if n > self.capacity:
            raise ValueError(f"adding {n} transitions to a buffer of {self.capacity}")
        idx = (self.ptr + torch.arange(n, device=self.device)) % self.capacity
        for k, v in batch.items():
            self.data[k][idx] = v.to(self.device, self.data[k].dtype).reshape(n, *self.spec[k])
        self.ptr = (self.ptr + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample_indices(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.size == 0:
            raise ValueError("sampling from an empty replay buffer")
        return torch.randint(0, self.size, (batch_size,), generator=generator).to(self.device)

    def get(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v[idx] for k, v in self.data.items()}

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        return self.get(self.sample_indices(batch_size, generator))

    def state_dict(self) -> dict:
        return {"ptr": self.ptr, "size": self.size, "capacity": self.capacity,
                "data": {k: v[:self.size].clone() for k, v in self.data.items()}}

    def load_state_dict(self, state: dict) -> None:
        if state["capacity"] != self.capacity or set(state["data"]) != set(self.data):
            raise ValueError("replay state of another buffer shape")
        self.ptr, self.size = int(state["ptr"]), int(state["size"])
        for k, v in state["data"].items():
            self.data[k][:self.size] = v.to(self.device)
