"""`latentops robustness RUN...`: the Laplacian-networks authors' robustness evaluation of a trained
classifier run, written into the run as robustness.json and robustness.png. Every perturbation is
latentops.robustness's: Gaussian noise at requested SNRs and at the authors' σ, FGSM at an SNR, L∞
PGD, test-time dropout after every block, k-bit weights. The random ones are drawn `draws` times
with seeds 0, 1, ... (fresh masks and noise each draw, nothing carried between p values)."""

from __future__ import annotations

import dataclasses
import functools
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
        """{perturbation: its measurements}, the accuracies of every draw under "accuracy"."""
        from tqdm.auto import tqdm

        o = self.options
        steps = {"clean": lambda: {"accuracy": [self.accuracy(self.x)]}}
        steps.update({f"noise {snr:g} dB": functools.partial(self._noise_at, snr) for snr in o.snrs_db})
        steps[f"noise σ={o.sigma:g}"] = self._noise_sigma
        if not self.geo:  # the attacks ascend the cross-entropy of the logits: CE runs only
            steps[f"FGSM {o.fgsm_snr_db:g} dB"] = self._fgsm
            steps[f"PGD ε={o.pgd_eps:g}"] = self._pgd
        steps.update({f"dropout p={p:g}": functools.partial(self._dropout, p) for p in o.dropout})
        steps[f"{o.bits}-bit weights"] = lambda: {
            "accuracy": [self.accuracy(self.x, robustness.kbit_weights(self.model, bits=o.bits))]
        }
        return {name: measure() for name, measure in tqdm(steps.items(), desc="robustness", disable=not progress)}

    def _noise_at(self, snr: float) -> dict:
        noisy = [robustness.gaussian_noise(self.x, snr, seed=d) for d in range(self.options.draws)]
        achieved = torch.cat([robustness.snr_db(self.x, n) for n in noisy])
        finite = achieved[torch.isfinite(achieved)]  # an all-zero image has no SNR
        return {
            "accuracy": [self.accuracy(n) for n in noisy],
            "achieved_snr_db": [float(finite.min()), float(finite.max())] if len(finite) else None,
        }

    def _noise_sigma(self) -> dict:
        o = self.options
        noisy = [robustness.gaussian_noise(self.x, sigma=o.sigma, seed=d) for d in range(o.draws)]
        achieved = torch.cat([robustness.snr_db(self.x, n) for n in noisy])
        return {"accuracy": [self.accuracy(n) for n in noisy], "median_snr_db": float(achieved.median())}

    def _fgsm(self) -> dict:
        adv = self._adversarial(lambda x, y: robustness.fgsm(self.model, x, y, snr_db=self.options.fgsm_snr_db))
        return {"accuracy": [self.accuracy(adv)]}

    def _pgd(self) -> dict:
        o = self.options
        adv = self._adversarial(
            lambda x, y: robustness.pgd_linf(
                self.model, x, y, eps=o.pgd_eps, step=o.pgd_step, iterations=o.pgd_iterations
            )
        )
        return {"accuracy": [self.accuracy(adv)], "max_linf": float((adv - self.x).abs().max())}

    def _dropout(self, p: float) -> dict:
        accuracies = []
        for d in range(self.options.draws):  # a fresh context (and generator) per draw: nothing carried over
            with robustness.with_test_time_dropout(self.model, p, blocks(self.task.model), seed=d):
                accuracies.append(self.accuracy(self.x))
        return {"accuracy": accuracies}


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


# -- the `latentops robustness` command ---------------------------------------------------------


def add_arguments(parser) -> None:
    """RUN_DIR... and one option per SuiteOptions setting (tuples comma-separated)."""
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    for field in dataclasses.fields(SuiteOptions):
        default = field.default
        shown = ",".join(f"{v:g}" for v in default) if isinstance(default, tuple) else default
        parser.add_argument("--" + field.name.replace("_", "-"), default=None, metavar="VALUE", help=f"default {shown}")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def options_from(args) -> SuiteOptions:
    """SuiteOptions from the parsed command line: ValueError naming the option whose value is not a
    number (or list of numbers) in its range."""
    values = {}
    for field in dataclasses.fields(SuiteOptions):
        text, flag = getattr(args, field.name), "--" + field.name.replace("_", "-")
        if text is None:
            continue
        kind = int if field.type in ("int", "int | None") else float
        listed = isinstance(field.default, tuple)
        try:
            parsed = tuple(kind(v) for v in text.split(","))
        except ValueError:
            raise ValueError(
                f"{flag} must be {'comma-separated ' if listed else ''}{kind.__name__}s, got {text!r}"
            ) from None
        if not listed and len(parsed) != 1:
            raise ValueError(f"{flag} takes one value, got {text!r}")
        values[field.name] = parsed if listed else parsed[0]
    return SuiteOptions(**values)


def command(args) -> None:
    """Evaluate each RUN_DIR and print its mean accuracy under each perturbation."""
    options = options_from(args)
    for run_dir in args.run_dirs:
        document = evaluate_run(run_dir, options, args.device, args.progress)
        means = {name: sum(r["accuracy"]) / len(r["accuracy"]) for name, r in document["results"].items()}
        print(f"{run_dir}: " + ", ".join(f"{name} {100 * acc:.1f}%" for name, acc in means.items()))
