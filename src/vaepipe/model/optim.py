"""Adam without `torch.optim`: building any of its optimizers imports torch._dynamo (about a
second and 150 MB of a stage's start-up), and each of its steps runs through hooks. Either
kernel here gives `torch.optim.Adam`'s bits (tests/test_training.py compares them):

- `fused=True` steps every tensor in one call of the kernel behind `Adam(fused=True)`,
  faster per step than the default on a CPU: the train stage's;
- `fused=False` steps each tensor with the operations of `torch.optim.Adam()`'s default on a
  CPU (its single-tensor path): the scoring CNN's, whose weights, and so every FD of the
  pipeline, were made with it.
"""

from __future__ import annotations

import math

import torch


class Adam:
    """Adam (betas 0.9, 0.999) with torch.optim's state; `lr` may change between steps."""

    def __init__(self, parameters, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 fused: bool = True):
        self.params = list(parameters)
        self.lr, self.betas, self.eps, self.fused = lr, betas, eps, fused
        self.exp_avgs = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sqs = [torch.zeros_like(p) for p in self.params]
        # one step count (float32, as torch.optim keeps them) shared by every tensor: one
        # increment a step where torch.optim makes one per tensor
        self.step_count = torch.zeros((), device=self.params[0].device)
        self.steps = [self.step_count] * len(self.params)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        self.step_count += 1
        if self.fused:
            torch._fused_adam_(self.params, [p.grad for p in self.params], self.exp_avgs, self.exp_avg_sqs, [],
                               self.steps, lr=self.lr, beta1=beta1, beta2=beta2,
                               weight_decay=0.0, eps=self.eps, amsgrad=False, maximize=False)
            return
        for p, exp_avg, exp_avg_sq, step in zip(self.params, self.exp_avgs, self.exp_avg_sqs, self.steps):
            exp_avg.lerp_(p.grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            t = step.item()
            denom = (exp_avg_sq.sqrt() / (1 - beta2 ** t) ** 0.5).add_(self.eps)
            p.addcdiv_(exp_avg, denom, value=-(self.lr / (1 - beta1 ** t)))


def cosine_rates(lr: float, steps: int) -> list[float]:
    """The learning rate of each of `steps` steps falling from `lr` towards 0 along a half
    cosine, computed by the recursion `torch.optim.lr_scheduler.CosineAnnealingLR` steps
    through (its closed form differs in the last bits)."""
    rates = [lr]
    for t in range(1, steps):
        rates.append((1 + math.cos(math.pi * t / steps)) / (1 + math.cos(math.pi * (t - 1) / steps)) * rates[-1])
    return rates
