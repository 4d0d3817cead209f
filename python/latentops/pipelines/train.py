"""The training loop behind `latentops train`: data-parallel under torchrun, periodic evaluation,
checkpoints that resume exactly, metrics.jsonl / metrics.json and PNGs in the run folder."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import torch

from latentops import _backend
from latentops.data import DATASETS, ImageDataset, lines, load_dataset
from latentops.models import MODELS, build_model
from latentops.pipelines import checkpoint, distributed, plots
from latentops.pipelines.downstream import clustering_accuracy, encode_all, linear_probe_accuracy
from latentops.pipelines.interpolation import FRAMES, decode_interpolations, interpolation_metrics

BACKENDS = ("ops", "torch")
# Fields that define a run: resuming with another value would silently train something else.
_IDENTITY = ("model", "dataset", "batch_size", "latent", "depth", "scales", "lr", "seed")
_GRID_PAIRS = 8
FRAMES_PNG = "interpolation-frames.png"


@dataclasses.dataclass
class TrainConfig:
    """One training run. Defaults follow ACAI on lines: batch 64, Adam at 1e-4, 2^24 images
    (262,144 steps), depth 16, a 4×4×16 latent."""

    model: str
    out: str
    dataset: str = "lines"
    data_dir: str | None = None
    steps: int = 262_144
    batch_size: int = 64
    latent: int = 16
    depth: int = 16
    scales: int | None = None
    lr: float = 1e-4
    device: str = "auto"
    backend: str = "ops"
    seed: int = 0
    eval_every: int | None = None
    checkpoint_every: int | None = None
    log_every: int = 50
    eval_pairs: int = 256
    eval_images: int = 1024
    downstream: bool = True
    kmeans_restarts: int = 100
    probe_images: int = 10_000
    resume: bool = False
    progress: bool = True
    threads: int | None = None

    def validate(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"--model must be one of {tuple(MODELS)}, got {self.model!r}")
        if self.dataset not in DATASETS:
            raise ValueError(f"--dataset must be one of {DATASETS}, got {self.dataset!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"--backend must be one of {BACKENDS}, got {self.backend!r}")
        for name in ("steps", "batch_size", "latent", "depth", "log_every", "eval_pairs", "eval_images",
                     "kmeans_restarts", "probe_images"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be an int ≥ 1, got {value!r}")
        for name in ("scales", "eval_every", "checkpoint_every", "threads"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"--{name.replace('_', '-')} must be an int ≥ 1, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"--lr must be a number > 0, got {self.lr!r}")

    @property
    def eval_interval(self) -> int:
        return self.eval_every or max(1, self.steps // 10)

    @property
    def checkpoint_interval(self) -> int:
        return self.checkpoint_every or self.eval_interval


def train(config: TrainConfig) -> dict:
    """Train (or resume) the run described by config; returns the summary also written to
    RUN_DIR/metrics.json (on rank 0; other ranks return {})."""
    config.validate()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    dataset = load_dataset(config.dataset, config.data_dir)  # before any process group: fail fast
    context = distributed.setup(config.device)
    try:
        backend = _backend.use_backend("torch") if config.backend == "torch" else contextlib.nullcontext()
        with backend:
            return _Run(config, dataset, context).run()
    finally:
        distributed.teardown(context)


class _Run:
    def __init__(self, config: TrainConfig, dataset: ImageDataset, context: distributed.Context):
        self.config, self.dataset, self.context = config, dataset, context
        self.device = context.device
        self.run_dir = Path(config.out)
        torch.manual_seed(config.seed)
        self.model = build_model(config.model, dataset.image_shape, depth=config.depth,
                                 latent=config.latent, scales=config.scales).to(self.device)
        if context.distributed:
            distributed.broadcast_module(self.model)
        self.groups = self.model.param_groups()
        self.optimizers = {name: torch.optim.Adam(params, lr=config.lr)
                           for name, params in self.groups.items()}
        # Each rank draws its own noise, dropout masks, α (rank 0 continues the seed's stream).
        torch.manual_seed(config.seed + 7919 * context.rank)
        self.step = 0
        self.counters = {"train_seconds": 0.0, "train_images": 0}
        self.records: list[dict] = []

    # -- setup -------------------------------------------------------------------------------

    def _start(self) -> None:
        config = self.config
        found = checkpoint.latest(self.run_dir)
        if found is None and (self.run_dir / "metrics.jsonl").exists() and not config.resume:
            raise FileExistsError(f"--out {str(self.run_dir)!r} already holds a run; pass --resume "
                                  f"to continue it or choose another --out")
        if found is not None and not config.resume:
            raise FileExistsError(f"--out {str(self.run_dir)!r} already holds a checkpoint "
                                  f"({found.name}); pass --resume to continue it or choose another --out")
        if found is not None:
            self._check_identity()
            state = checkpoint.load(found, self.model, self.optimizers, self.device)
            self.step = int(state["step"])
            self.counters = dict(state["counters"])
            ranks = state["rng"]
            if len(ranks) != self.context.world:
                raise ValueError(f"checkpoint {found} was written by {len(ranks)} processes; resume "
                                 f"it with as many (got {self.context.world})")
            checkpoint.set_rng_state(ranks[self.context.rank], self.device)
            self.records = [r for r in _read_jsonl(self.run_dir / "metrics.jsonl")
                            if r.get("step", 0) <= self.step]
        if self.context.distributed:  # every rank has looked at the folder before rank 0 writes
            torch.distributed.barrier()
        if self.context.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
            _write_jsonl(self.run_dir / "metrics.jsonl", self.records)

    def _check_identity(self) -> None:
        path = self.run_dir / "config.json"
        if not path.is_file():
            return
        saved = json.loads(path.read_text())
        for name in _IDENTITY:
            if name in saved and saved[name] != getattr(self.config, name):
                raise ValueError(f"--{name.replace('_', '-')} is {getattr(self.config, name)!r} but the "
                                 f"run in {str(self.run_dir)!r} was started with {saved[name]!r}")

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> dict:
        self._start()
        config, context = self.config, self.context
        from tqdm.auto import tqdm

        # Redirected to a file, a bar redrawn 10 times a second would fill it.
        bar = tqdm(total=config.steps, initial=self.step, unit="step", dynamic_ncols=True,
                   mininterval=0.1 if sys.stderr.isatty() else 30.0,
                   desc=f"{config.model}/{config.dataset}", disable=not (config.progress and context.main))
        running: dict[str, torch.Tensor] = {}
        interval_start, interval_steps, first_interval = time.perf_counter(), 0, True
        try:
            while self.step < config.steps:
                logs = self._train_step()
                for name, value in logs.items():
                    running[name] = running[name] + value if name in running else value.clone()
                self.step += 1
                interval_steps += 1
                bar.update(1)
                last = self.step == config.steps
                due_eval = self.step % config.eval_interval == 0 or last
                due_checkpoint = self.step % config.checkpoint_interval == 0 or last
                if self.step % config.log_every == 0 or due_eval or due_checkpoint:
                    if self.device.type == "cuda":
                        torch.cuda.synchronize(self.device)  # the throughput needs the work done
                    elapsed = time.perf_counter() - interval_start
                    images = interval_steps * config.batch_size
                    if not first_interval:  # the first interval of a process holds its warm-up
                        self.counters["train_seconds"] += elapsed
                        self.counters["train_images"] += images
                    first_interval = False
                    record = self._log(running, interval_steps, images / max(elapsed, 1e-9))
                    bar.set_postfix(loss=f"{record['loss/mse']:.4g}" if "loss/mse" in record else "",
                                    img_s=f"{record['images_per_s']:.0f}")
                    running, interval_steps = {}, 0
                    if due_eval:
                        self._evaluate(final=last)
                    if due_checkpoint:
                        self._checkpoint()
                    interval_start = time.perf_counter()
        finally:
            bar.close()
        return self._finish()

    def _train_step(self) -> dict[str, torch.Tensor]:
        config, context = self.config, self.context
        images, _ = self.dataset.train_batch(self.step, config.batch_size, config.seed,
                                             context.rank, context.world)
        images = images.to(self.device, non_blocking=True)
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        losses = self.model.losses(images)
        items = list(losses.per_group.items())
        for i, (group, loss) in enumerate(items):
            # Each group's loss moves only its own parameters (the critic's loss not the
            # autoencoder, and the reverse); the graph is shared, so keep it until the last.
            torch.autograd.backward(loss, inputs=self.groups[group], retain_graph=i < len(items) - 1)
        if context.distributed:
            for params in self.groups.values():
                distributed.average_gradients(params, context.world)
        for optimizer in self.optimizers.values():
            optimizer.step()
        logs = dict(losses.logs)
        for group, loss in items:
            logs[f"{group}"] = loss.detach()
        return logs

    def _log(self, running: dict, steps: int, images_per_s: float) -> dict:
        names = list(running)
        values = torch.stack([running[n].float() for n in names]).div_(max(steps, 1)).tolist() if names else []
        record = {"kind": "train", "step": self.step, "images_per_s": images_per_s,
                  **{f"loss/{n}": v for n, v in zip(names, values)}}
        self._append(record)
        return record

    def _append(self, record: dict) -> None:
        self.records.append(record)
        if self.context.main:
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    # -- evaluation, checkpoints, outputs ----------------------------------------------------

    def _evaluate(self, final: bool) -> None:
        """Rank 0 evaluates (with its own random streams untouched); the others wait."""
        if self.context.main:
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                record = {"kind": "eval", "step": self.step, **self._eval_metrics()}
            self._append(record)
        if self.context.distributed:
            torch.distributed.barrier()

    @torch.no_grad()
    def _eval_metrics(self) -> dict:
        model = self.model
        test_images, _ = self.dataset.test_set()
        sample = test_images[:self.config.eval_images].to(self.device)
        was_training = model.training
        model.eval()
        try:
            test_mse = float(torch.nn.functional.mse_loss(model.decode(model.encode(sample)), sample))
        finally:
            model.train(was_training)
        start, end = self._pairs()
        decoded = decode_interpolations(model, start.to(self.device), end.to(self.device), FRAMES)
        plots.save_interpolation_grid(decoded[:_GRID_PAIRS], self.run_dir / "interpolation.png",
                                      f"{self.config.model} on {self.config.dataset}, step {self.step}")
        plots.save_frames(decoded[:_GRID_PAIRS], self.run_dir / FRAMES_PNG)
        metrics = {"test_mse": test_mse}
        if self.config.dataset == "lines":
            metrics.update(interpolation_metrics(decoded))
        return metrics

    def _pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.config.dataset == "lines":
            start, end = lines.interpolation_pair_angles(self.config.eval_pairs)
            return lines.draw_lines(start), lines.draw_lines(end)
        test_images, _ = self.dataset.test_set()
        pairs = min(self.config.eval_pairs, test_images.shape[0] // 2)
        return test_images[:pairs], test_images[pairs:2 * pairs]

    def _checkpoint(self) -> None:
        rng = distributed.gather_objects(checkpoint.rng_state(self.device))
        if self.context.main:
            checkpoint.save(self.run_dir, self.step, self.model, self.optimizers, rng, self.counters)
        if self.context.distributed:
            torch.distributed.barrier()

    def _finish(self) -> dict:
        if not self.context.main:
            return {}
        config = self.config
        summary = {"model": config.model, "dataset": config.dataset, "steps": self.step,
                   "batch_size": config.batch_size, "processes": self.context.world,
                   "device": str(self.device), "backend": config.backend,
                   "images_per_s": (self.counters["train_images"] / self.counters["train_seconds"]
                                    if self.counters["train_seconds"] > 0 else None)}
        evals = [r for r in self.records if r["kind"] == "eval"]
        if evals:
            summary.update({k: v for k, v in evals[-1].items() if k not in ("kind", "step")})
        trains = [r for r in self.records if r["kind"] == "train"]
        if trains:
            summary["train_mse"] = trains[-1].get("loss/mse")
        if config.downstream:
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                summary.update(self._downstream())
        (self.run_dir / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
        plots.save_loss_curve(self.records, self.run_dir / "loss.png",
                              f"{config.model} on {config.dataset}")
        return summary

    def _downstream(self) -> dict:
        train_images, train_labels = self.dataset.probe_train_set(self.config.probe_images)
        test_images, test_labels = self.dataset.test_set()
        train_z = encode_all(self.model, train_images, self.device)
        test_z = encode_all(self.model, test_images, self.device)
        classes = self.dataset.num_classes
        return {"probe_accuracy": linear_probe_accuracy(train_z, train_labels, test_z, test_labels, classes),
                "clustering_accuracy": clustering_accuracy(test_z, test_labels, classes,
                                                           restarts=self.config.kmeans_restarts,
                                                           seed=self.config.seed)}


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
