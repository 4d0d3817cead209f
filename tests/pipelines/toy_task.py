"""A second task for the runner, small enough to train in a blink: a linear regression on seeded
random data, with what the classifier and compression tasks will need from the runner (two
parameter groups with their own optimizers and losses, a learning-rate schedule, noise drawn from
the global random stream, a projection after each step) and its own report rows."""

from __future__ import annotations

import dataclasses

import torch

from latentops.models.base import Losses
from latentops.pipelines import run_options as run
from latentops.pipelines.options import POSITIVE, option
from latentops.pipelines.task import Row, Task, TaskReport, Training

DIM = 5


@dataclasses.dataclass(kw_only=True)
class ToyConfig:
    lr: float = option(0.1, check=POSITIVE, help="SGD's learning rate")
    noise: float = option(0.1, help="std of the noise added to the inputs at each step")
    max_norm: float = option(0.8, check=POSITIVE, help="the weights are projected back to this norm")
    steps: int = run.steps(10)
    batch_size: int = run.batch_size(8)
    device: str = run.device()
    backend: str = run.backend()
    threads: int | None = run.threads()
    seed: int = run.seed()
    eval_every: int | None = run.eval_every()
    checkpoint_every: int | None = run.checkpoint_every()
    log_every: int = run.log_every(1)
    resume: bool = run.resume()
    progress: bool = run.progress()
    out: str = run.out()


class ToyModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(DIM, 1)
        self.scale = torch.nn.Parameter(torch.ones(()))


class ToyReport(TaskReport):
    loss = ("fit", "fit loss")
    keys = ("lr",)

    def section(self, dataset):
        return f"toy regression on {dataset}"

    def rows(self, dataset):
        return [
            Row("test_loss", "Test loss", lambda v: f"{v:.3f}"),
            Row("weight_norm", "Weight norm", lambda v: f"{v:.2f}"),
        ]

    def column(self, summary):
        return f"toy lr={summary['lr']}"

    def figure_metrics(self, summaries):
        return [("test_loss", "test loss")]


def _data(seed: int, step: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    x = torch.randn(count, DIM, generator=generator)
    return x, x.sum(1, keepdim=True) * 0.5 + 1.0


class ToyTask(Task):
    name = "toy"
    command = "toy"
    help = "fit a line (a test of the runner)"
    config_class = ToyConfig
    identity = ("lr", "noise")
    progress_loss = "fit"
    report = ToyReport()

    def describe(self):
        return {"model": "linear", "dataset": "toy", "lr": self.config.lr}

    def build(self, device):
        self.device = device
        self.model = ToyModel().to(device)
        groups = {"linear": list(self.model.linear.parameters()), "scale": [self.model.scale]}
        optimizers = {
            "linear": torch.optim.SGD(groups["linear"], lr=self.config.lr, momentum=0.9),
            "scale": torch.optim.Adam(groups["scale"], lr=self.config.lr),
        }
        schedulers = {"linear": torch.optim.lr_scheduler.StepLR(optimizers["linear"], step_size=3, gamma=0.5)}
        return Training(self.model, groups, optimizers, schedulers)

    def batch(self, step, rank, world):
        x, y = _data(self.config.seed, step, self.config.batch_size)
        return x[rank::world].to(self.device), y[rank::world].to(self.device)

    def losses(self, batch):
        x, y = batch
        x = x + self.config.noise * torch.randn_like(x)  # from the global stream: resume must restore it
        fit = torch.nn.functional.mse_loss(self.model.linear(x) * self.model.scale, y)
        # Two losses on one graph, each moving its own group (as the adversarial autoencoders do).
        scale = fit + 0.1 * (self.model.scale - 1.0).square()
        return Losses({"linear": fit, "scale": scale}, {"fit": fit.detach()})

    @torch.no_grad()
    def after_step(self, step):
        weight = self.model.linear.weight
        weight.mul_((self.config.max_norm / weight.norm()).clamp(max=1.0))

    @torch.no_grad()
    def evaluate(self, step, run_dir):
        x, y = _data(self.config.seed + 1, 0, 64)
        x, y = x.to(self.device), y.to(self.device)
        return {"test_loss": float(torch.nn.functional.mse_loss(self.model.linear(x) * self.model.scale, y))}

    @torch.no_grad()
    def final_metrics(self, records):
        return {"weight_norm": float(self.model.linear.weight.norm())}


def interrupt_at(monkeypatch, step: int):
    """Make ToyTask raise KeyboardInterrupt (a simulated Ctrl-C) when it draws the batch of `step`;
    returns the function that undoes it."""
    original = ToyTask.batch

    def interrupted(self, at, rank, world):
        if at == step:
            raise KeyboardInterrupt("simulated interruption")
        return original(self, at, rank, world)

    monkeypatch.setattr(ToyTask, "batch", interrupted)
    return lambda: monkeypatch.setattr(ToyTask, "batch", original)
