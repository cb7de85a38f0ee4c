"""Lookahead (Zhang et al. 2019) with a growing slow-weight decay, as airbench uses it for short classifier runs.

Every k steps the slow copy moves toward the fast weights by (1 - decay) and the fast weights restart from
it. Early in training decay is ~0 (plain SGD); it grows as (progress)^3 toward `final_decay`, so the
end of the run averages over its last few hundred steps, like an EMA that the optimizer also follows.
"""

from __future__ import annotations

import torch
from torch import nn


class Lookahead:
    def __init__(self, model: nn.Module, every: int, final_decay: float, total_steps: int):
        self.every = every
        self.final_decay = final_decay
        self.total_steps = total_steps
        self.slow = [t.detach().clone() for t in self._tracked(model)]

    @staticmethod
    def _tracked(model: nn.Module) -> list[torch.Tensor]:
        # Weights and BatchNorm running statistics; the integer batch counters are left alone.
        return [t for t in model.state_dict().values() if t.is_floating_point()]

    @torch.no_grad()
    def after_step(self, model: nn.Module, steps_done: int) -> None:
        if steps_done % self.every == 0:
            self._sync(model, self.final_decay * (steps_done / self.total_steps) ** 3)

    @torch.no_grad()
    def finish(self, model: nn.Module) -> None:
        """End of training: the model takes the slow weights."""
        self._sync(model, 1.0)

    def state_dict(self) -> dict:
        return {"slow": self.slow}

    def load_state_dict(self, state: dict) -> None:
        if len(state["slow"]) != len(self.slow):
            raise ValueError(f"Lookahead state has {len(state['slow'])} tensors, this model {len(self.slow)}")
        for mine, saved in zip(self.slow, state["slow"], strict=True):
            mine.copy_(saved)

    def _sync(self, model: nn.Module, decay: float) -> None:
        fast = self._tracked(model)
        torch._foreach_lerp_(self.slow, fast, 1.0 - decay)
        for f, s in zip(fast, self.slow, strict=True):
            f.copy_(s)
