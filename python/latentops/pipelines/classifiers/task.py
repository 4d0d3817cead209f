"""Classifier training as a task of the runner: `latentops classify`. Cross-entropy (or geometry
targets, GEO) with the Laplacian-networks smoothness regularizer on the model's taps and the
Parseval retraction as options; each evaluation reports the test accuracy and the label smoothness
of every tap on a fixed test batch (the authors' per-layer curve)."""

from __future__ import annotations

import dataclasses
import inspect
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from latentops.data import ArrayDataset, load_dataset
from latentops.models.base import Losses
from latentops.models.classifiers import CLASSIFIERS, build_classifier, parseval_step
from latentops.nn import GeometryTargetLoss, SmoothnessVariationLoss
from latentops.pipelines import checkpoint
from latentops.pipelines.classifiers.config import ClassifyConfig, parse_milestones
from latentops.pipelines.classifiers.report import ClassifierReport, variant
from latentops.pipelines.run_folder import CONFIG_JSON, read_json_object
from latentops.pipelines.task import Task, Training

_EVAL_CHUNK = 500  # test images per forward at evaluation


def crop_flip(x: torch.Tensor) -> torch.Tensor:
    """Random crops of the image padded by 1/8 of its side with black (−1), then horizontal flips
    with probability ½: torchvision's RandomCrop(32, padding=4) + RandomHorizontalFlip at any size.
    Draws from torch's global stream (the runner checkpoints it: a resumed run crops the same)."""
    n, _, h, w = x.shape
    pad = max(1, h // 8)
    padded = F.pad(x, (pad, pad, pad, pad), value=-1.0)
    dy = torch.randint(0, 2 * pad + 1, (n,)).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,)).to(x.device)
    flip = (torch.rand(n) < 0.5).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)).view(n, 1, h, 1).expand(-1, x.shape[1], -1, padded.shape[3])
    cropped = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w, device=x.device)).view(n, 1, 1, w).expand(-1, x.shape[1], h, -1)
    cropped = cropped.gather(3, cols)
    return torch.where(flip.view(n, 1, 1, 1), cropped.flip(3), cropped)


def _takes(arch: str, option: str) -> bool:
    return option in inspect.signature(CLASSIFIERS[arch].__init__).parameters


class ClassifierTask(Task):
    name = "classifiers"
    command = "classify"
    help = "train a classifier: cross-entropy or geometry targets, graph-smoothness regularized, Parseval"
    description = (
        "Train one classifier (latentops.models.classifiers) on an image dataset; writes metrics.jsonl, "
        "metrics.json, checkpoints and loss.png to --out. --smoothness γ adds the Laplacian-networks "
        "regularizer, --parseval β the Parseval retraction, --loss geo trains on geometry targets."
    )
    config_class = ClassifyConfig
    identity = (
        *("arch", "dataset", "train_per_class", "width", "steps", "lr", "momentum", "weight_decay"),
        *("lr_milestones", "lr_gamma", "augment", "loss", "smoothness", "smoothness_power", "graph_k", "parseval"),
    )
    progress_loss = "classifier"
    report = ClassifierReport()

    def __init__(self, config: ClassifyConfig, dataset=None):
        super().__init__(config)
        self.dataset = (
            dataset
            if dataset is not None
            else load_dataset(config.dataset, config.data_dir, train_per_class=config.train_per_class)
        )
        if config.epochs is not None:
            if not isinstance(self.dataset, ArrayDataset):
                raise ValueError(f"--epochs needs a finite dataset; {self.dataset.name!r} is a stream: give --steps")
            config.steps = max(1, math.ceil(config.epochs * len(self.dataset.train_labels) / config.batch_size))
        if config.width is not None and not _takes(config.arch, "width"):
            takes = ", ".join(name for name in CLASSIFIERS if _takes(name, "width"))
            raise ValueError(f"--width: the classifier {config.arch!r} has no width option ({takes} have)")
        if config.width is not None and config.arch != "wrn" and config.width != int(config.width):
            raise ValueError(f"--width: {config.arch!r} takes a whole number of channels or units, got {config.width}")
        classes = self.dataset.num_classes
        # The authors' graph: cosine similarities of a tap's (flattened) outputs over the whole
        # batch, L = D − W, Y one-hot.
        self.regularizer = SmoothnessVariationLoss(k=config.graph_k, power=config.smoothness_power, num_classes=classes)
        # GEO: the output's cosine graph against the labels' (1 within a class, 0 across), mean over
        # the n² entries. Measured on digits (preact-small, 300 steps, SGD 0.1): this reaches 91.5%,
        # the D^-½WD^-½-normalized graphs 41.6% (their entries, ~1/n, give ~n× smaller gradients)
        # and the sum over entries diverges.
        self.geometry = GeometryTargetLoss(reduction="mean", num_classes=classes) if config.loss == "geo" else None

    def describe(self) -> dict:
        return {"arch": self.config.arch, "dataset": self.dataset.name, "variant": variant(vars(self.config))}

    def build(self, device: torch.device) -> Training:
        config = self.config
        self.device = device
        options = {}
        if config.width is not None:
            options["width"] = float(config.width) if config.arch == "wrn" else int(config.width)
        if config.parseval > 0 and _takes(config.arch, "parseval"):
            options["parseval"] = True  # the authors' Parseval variant of the architecture
        self.model = build_classifier(config.arch, self.dataset.image_shape, self.dataset.num_classes, **options).to(
            device
        )
        params = list(self.model.parameters())
        optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
        drops = [m * config.steps for m in parse_milestones(config.lr_milestones)]
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: config.lr_gamma ** sum(step >= d for d in drops)
        )
        return Training(self.model, {"classifier": params}, {"classifier": optimizer}, {"classifier": schedule})

    def batch(self, step: int, rank: int, world: int):
        images, labels = self.dataset.train_batch(step, self.config.batch_size, self.config.seed, rank, world)
        images, labels = images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
        if self.config.augment == "crop-flip":
            images = crop_flip(images)
        return images, labels

    def losses(self, batch) -> Losses:
        images, labels = batch
        logits, taps = self.model(images, return_taps=True)
        loss, logs = self.objective(images, labels, logits, taps)
        return Losses({"classifier": loss}, logs)

    def objective(self, images, labels, logits, taps) -> tuple[torch.Tensor, dict]:
        """The training loss of a batch and the scalars logged with it."""
        config = self.config
        logs = {}
        if self.geometry is None:
            loss = F.cross_entropy(logits, labels)
            logs["ce"] = loss.detach()
            logs["train_accuracy"] = (logits.detach().argmax(1) == labels).float().mean()
        else:
            loss = self.geometry(logits, labels)
            logs["geo"] = loss.detach()
        if config.smoothness > 0:
            variation = self.regularizer(taps, labels)
            loss = loss + config.smoothness**config.smoothness_power * variation
            logs["smoothness_variation"] = variation.detach()
        return loss, logs

    def after_step(self, step: int) -> None:
        if self.config.parseval > 0:
            parseval_step(self.model, self.config.parseval)

    @torch.no_grad()
    def _outputs(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.model(chunk.to(self.device)) for chunk in images.split(_EVAL_CHUNK)])

    @torch.no_grad()
    def evaluate(self, step: int, run_dir) -> dict:
        model, config = self.model, self.config
        test_images, test_labels = self.dataset.test_set()
        was_training = model.training
        model.eval()
        try:
            outputs = self._outputs(test_images)
            labels = test_labels.to(self.device)
            metrics = {}
            predicted = self._predicted(outputs)
            if self.geometry is None:
                metrics["test_loss"] = float(F.cross_entropy(outputs, labels))
            metrics["test_accuracy"] = float((predicted == labels).float().mean())
            _, taps = model(test_images[: config.eval_batch].to(self.device), return_taps=True)
            smoothness = self.regularizer.smoothness(taps, labels[: config.eval_batch])
            metrics["smoothness_per_layer"] = [float(s) for s in smoothness]
        finally:
            model.train(was_training)
        return metrics

    def _predicted(self, outputs: torch.Tensor) -> torch.Tensor:
        """The class of each output: its largest logit, or with GEO the nearest class mean."""
        return outputs.argmax(1) if self.geometry is None else self._nearest_class_mean(outputs)

    @torch.no_grad()
    def test_predictions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(predicted class, label) of every test image, as evaluate scores them (eval mode; GEO:
        the nearest class mean), on the CPU: what a paired test of two models compares."""
        images, labels = self.dataset.test_set()
        was_training = self.model.training
        self.model.eval()
        try:
            predicted = self._predicted(self._outputs(images))
        finally:
            self.model.train(was_training)
        return predicted.cpu(), labels.cpu()

    @torch.no_grad()
    def class_means(self) -> torch.Tensor:
        """GEO's classifier: the unit-normalized mean of each class's unit-normalized training
        outputs (up to 10,000 training images), (classes, outputs)."""
        train_images, train_labels = self.dataset.probe_train_set(10_000)
        train = F.normalize(self._outputs(train_images), dim=1)
        sums = torch.zeros(self.dataset.num_classes, train.shape[1], device=train.device)
        return F.normalize(sums.index_add_(0, train_labels.to(train.device), train), dim=1)

    def _nearest_class_mean(self, outputs: torch.Tensor) -> torch.Tensor:
        """The class whose mean output is nearest in cosine (as the cosine graph sees outputs)."""
        return (F.normalize(outputs, dim=1) @ self.class_means().T).argmax(1)


def load_classifier(run_dir, device) -> ClassifierTask:
    """The task of a `latentops classify` or `latentops distill` run, its model restored from the
    run's latest checkpoint (checksums verified) and in eval mode; ValueError or FileNotFoundError
    naming what is missing or wrong."""
    from latentops.pipelines.classifiers.distill import DistillConfig, DistillTask

    run_dir, device = Path(run_dir), torch.device(device)
    saved = read_json_object(run_dir / CONFIG_JSON)
    config_class, task_class = (DistillConfig, DistillTask) if "teacher" in saved else (ClassifyConfig, ClassifierTask)
    fields = {f.name for f in dataclasses.fields(config_class)}
    config = config_class(**{k: v for k, v in saved.items() if k in fields})
    found = checkpoint.latest(run_dir)
    if found is None:
        raise FileNotFoundError(f"{str(run_dir)!r} has no checkpoint of a trained classifier")
    task = task_class(config)
    training = task.build(device)
    checkpoint.load(found, training.model, training.optimizers, device, training.schedulers)
    training.model.eval()
    return task
