"""`latentops robustness RUN...`: the Laplacian-networks authors' robustness evaluation of a trained
classifier run, written into the run as robustness.json and robustness.png. Every perturbation is
latentops.robustness's: Gaussian noise at requested SNRs and at the authors' σ, FGSM at an SNR, L∞
PGD, test-time dropout after every block, k-bit weights. The random ones are drawn `draws` times
with seeds 0, 1, ... (fresh masks and noise each draw, nothing carried between p values)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from latentops import robustness
from latentops.pipelines import checkpoint
from latentops.pipelines.classifiers.task import ClassifierTask, load_classifier

ROBUSTNESS_JSON = "robustness.json"
ROBUSTNESS_PNG = "robustness.png"
_CHUNK = 500


@dataclasses.dataclass(frozen=True)
class SuiteOptions:
    """What the suite runs; the defaults are the authors' settings (noise σ = 0.1 on [0, 1], FGSM
    at 33 dB, PGD ε = 0.01 with steps of 0.002 for 20 iterations, dropout 0.25 and 0.4, 5 bits)."""

    snrs_db: tuple[float, ...] = (40.0, 30.0, 25.0, 20.0, 15.0, 10.0)
    sigma: float = 0.1
    fgsm_snr_db: float = 33.0
    pgd_eps: float = 0.01
    pgd_step: float = 0.002
    pgd_iterations: int = 20
    dropout: tuple[float, ...] = (0.25, 0.4)
    bits: int = 5
    draws: int = 3
    images: int | None = None  # the first N test images (default: all)

    def __post_init__(self):
        def fail(name, what, value):
            raise ValueError(f"--{name.replace('_', '-')} must be {what}, got {value!r}")

        for name in ("sigma", "pgd_eps", "pgd_step"):
            if not getattr(self, name) >= 0:
                fail(name, "≥ 0", getattr(self, name))
        for name in ("pgd_iterations", "bits", "draws", "images"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and value >= 1):
                fail(name, "an int ≥ 1", value)
        if not self.snrs_db:
            fail("snrs_db", "at least one SNR", self.snrs_db)
        if any(not 0 <= p <= 1 for p in self.dropout):
            fail("dropout", "probabilities in [0, 1]", self.dropout)


class _ZeroOne(nn.Module):
    """The classifier on images in [0, 1] (latentops.robustness's convention; the datasets are in [−1, 1])."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x * 2.0 - 1.0)


def blocks(model: nn.Module) -> list[nn.Module]:
    """The modules after which test-time dropout goes: each residual block (PreAct), each group (WRN),
    each hidden layer (MLP)."""
    for name in ("layers", "groups", "hidden"):
        if isinstance(getattr(model, name, None), nn.ModuleList):
            return list(getattr(model, name))
    raise ValueError(f"{type(model).__name__} has no blocks (layers, groups or hidden) to apply dropout after")


class Suite:
    def __init__(self, task: ClassifierTask, options: SuiteOptions):
        self.task, self.options = task, options
        images, labels = task.dataset.test_set()
        count = options.images or len(labels)
        self.x = ((images[:count] + 1.0) / 2.0).to(task.device)  # [0, 1]
        self.y = labels[:count].to(task.device)
        self.model = _ZeroOne(task.model).eval()
        self.geo = task.geometry is not None
        if self.geo:  # nearest class mean, with the means of the clean model
            self.means = task.class_means()

    @torch.no_grad()
    def accuracy(self, x: torch.Tensor, model: nn.Module | None = None) -> float:
        model = model or self.model
        outputs = torch.cat([model(chunk) for chunk in x.split(_CHUNK)])
        predicted = (F.normalize(outputs, dim=1) @ self.means.T).argmax(1) if self.geo else outputs.argmax(1)
        return float((predicted == self.y).float().mean())

    def _adversarial(self, attack) -> torch.Tensor:
        return torch.cat([attack(x, y) for x, y in zip(self.x.split(_CHUNK), self.y.split(_CHUNK))])

    def run(self, progress: bool = True) -> dict:
        from tqdm.auto import tqdm

        o = self.options
        steps = [("clean", None)]
        steps += [(f"noise {snr:g} dB", snr) for snr in o.snrs_db] + [(f"noise σ={o.sigma:g}", None)]
        if not self.geo:  # the attacks ascend the cross-entropy of the logits: CE runs only
            steps += [(f"FGSM {o.fgsm_snr_db:g} dB", None), (f"PGD ε={o.pgd_eps:g}", None)]
        steps += [(f"dropout p={p:g}", p) for p in o.dropout] + [(f"{o.bits}-bit weights", None)]
        results: dict = {}
        for name, value in tqdm(steps, desc="robustness", disable=not progress):
            results[name] = self._measure(name, value)
        return results

    def _measure(self, name: str, value) -> dict:
        o, draws = self.options, range(self.options.draws)
        if name == "clean":
            return {"accuracy": [self.accuracy(self.x)]}
        if name.startswith("noise") and value is not None:
            noisy = [robustness.gaussian_noise(self.x, value, seed=d) for d in draws]
            achieved = torch.cat([robustness.snr_db(self.x, n) for n in noisy])
            finite = achieved[torch.isfinite(achieved)]
            return {
                "accuracy": [self.accuracy(n) for n in noisy],
                "achieved_snr_db": [float(finite.min()), float(finite.max())] if len(finite) else None,
            }
        if name.startswith("noise"):
            noisy = [robustness.gaussian_noise(self.x, sigma=o.sigma, seed=d) for d in draws]
            achieved = torch.cat([robustness.snr_db(self.x, n) for n in noisy])
            return {"accuracy": [self.accuracy(n) for n in noisy], "median_snr_db": float(achieved.median())}
        if name.startswith("FGSM"):
            adv = self._adversarial(lambda x, y: robustness.fgsm(self.model, x, y, snr_db=o.fgsm_snr_db))
            return {"accuracy": [self.accuracy(adv)]}
        if name.startswith("PGD"):
            adv = self._adversarial(
                lambda x, y: robustness.pgd_linf(
                    self.model, x, y, eps=o.pgd_eps, step=o.pgd_step, iterations=o.pgd_iterations
                )
            )
            return {"accuracy": [self.accuracy(adv)], "max_linf": float((adv - self.x).abs().max())}
        if name.startswith("dropout"):
            accuracies = []
            for d in draws:  # a fresh context (and generator) per draw: nothing carried over
                with robustness.with_test_time_dropout(self.model, value, blocks(self.task.model), seed=d):
                    accuracies.append(self.accuracy(self.x))
            return {"accuracy": accuracies}
        quantized = robustness.kbit_weights(self.model, bits=o.bits)
        return {"accuracy": [self.accuracy(self.x, quantized)]}


def evaluate_run(run_dir, options: SuiteOptions = SuiteOptions(), device="cpu", progress: bool = True) -> dict:
    """Run the suite on a classifier run and write RUN_DIR/robustness.json and robustness.png;
    returns what robustness.json holds."""
    run_dir = Path(run_dir)
    suite = Suite(load_classifier(run_dir, torch.device(device)), options)
    results = suite.run(progress)
    document = {"options": dataclasses.asdict(options), "images": len(suite.y), "results": results}
    text = json.dumps(document, indent=2) + "\n"
    checkpoint.write_atomic(run_dir / ROBUSTNESS_JSON, text)
    _plot(run_dir / ROBUSTNESS_PNG, results, options, str(run_dir.name))
    return json.loads(text)  # what a reader of the file gets (lists, not tuples)


def _plot(path: Path, results: dict, options: SuiteOptions, title: str) -> None:
    """Accuracy against the noise's SNR (mean and range over draws), the other perturbations as
    horizontal marks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    snrs = list(options.snrs_db)
    accs = [results[f"noise {snr:g} dB"]["accuracy"] for snr in snrs]
    means = [sum(a) / len(a) for a in accs]
    ax.plot(snrs, [100 * m for m in means], marker="o", label="Gaussian noise")
    ax.fill_between(snrs, [100 * min(a) for a in accs], [100 * max(a) for a in accs], alpha=0.2)
    clean = results["clean"]["accuracy"][0]
    ax.axhline(100 * clean, color="k", linestyle="--", linewidth=1, label="clean")
    if f"FGSM {options.fgsm_snr_db:g} dB" in results:
        fgsm = results[f"FGSM {options.fgsm_snr_db:g} dB"]["accuracy"][0]
        ax.scatter([options.fgsm_snr_db], [100 * fgsm], marker="x", color="r", label="FGSM", zorder=3)
    ax.set_xlabel("SNR (dB)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.set_ylim(0, 100)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
