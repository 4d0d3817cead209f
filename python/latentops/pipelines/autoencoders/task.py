"""ACAI's autoencoder zoo as a task of the runner: `latentops train`. Each evaluation reports the
test reconstruction error and, on lines, ACAI's interpolation metrics, and draws the
interpolations; the run ends with the downstream accuracies of the frozen latents."""

from __future__ import annotations

import statistics

import torch

from latentops.data import ImageDataset, lines, load_dataset
from latentops.models import acai_latent_width, build_model, default_scales, parse_model_options
from latentops.pipelines import plots
from latentops.pipelines.autoencoders.config import TrainConfig
from latentops.pipelines.autoencoders.downstream import (
    BIN_OFFSETS,
    circular_matched_accuracy,
    cluster_latents,
    encode_all,
    linear_probe_accuracy,
    matched_accuracy,
)
from latentops.pipelines.autoencoders.interpolation import FRAMES, decode_interpolations, interpolation_metrics
from latentops.pipelines.autoencoders.report import FRAMES_PNG, AutoencoderReport
from latentops.pipelines.task import Task, Training

_GRID_PAIRS = 8
MEDIAN_OF_LAST = 20  # evaluations the summary's Mean Distance and Smoothness are the median of (ACAI)


class AutoencoderTask(Task):
    name = "autoencoders"
    command = "train"
    help = "train an autoencoder of the zoo (under torchrun: data-parallel)"
    description = (
        "Train one model; writes metrics.jsonl, metrics.json, checkpoints, "
        "interpolation.png and loss.png to --out. Under `torchrun --nproc-per-node P` "
        "the P processes share each global batch (gloo on CPU, nccl on CUDA)."
    )
    config_class = TrainConfig
    identity = ("model", "dataset", "model_option", "latent", "depth", "scales", "lr", "classifier")
    progress_loss = "mse"
    report = AutoencoderReport()

    def __init__(self, config: TrainConfig, dataset: ImageDataset | None = None):
        super().__init__(config)
        try:  # before any data is loaded: a wrong option costs nothing
            self.model_options = parse_model_options(config.model, config.model_option)
        except ValueError as error:
            raise ValueError(f"--model-option: {error}") from None
        self.dataset = dataset if dataset is not None else load_dataset(config.dataset, config.data_dir)
        width = acai_latent_width(config.model, config.dataset)
        self.scales = default_scales(self.dataset.image_shape, width) if config.scales is None else config.scales

    def describe(self) -> dict:
        return {"model": self.config.model, "dataset": self.config.dataset}

    def build(self, device: torch.device) -> Training:
        config = self.config
        self.device = device
        self.model = build_model(
            config.model,
            self.dataset.image_shape,
            depth=config.depth,
            latent=config.latent,
            scales=self.scales,
            **self.model_options,
        )
        if config.classifier == "online":
            # ACAI's single-layer classifier, trained with the autoencoder on stop-gradient latents
            # by its own Adam: a submodule, so that checkpoints and ranks carry it.
            with torch.no_grad():
                width = self.model.probe_latent(torch.zeros(1, *self.dataset.image_shape)).numel()
            self.model.online_classifier = torch.nn.Linear(width, self.dataset.num_classes)
        self.model.to(device)
        groups = self.model.param_groups()
        if config.classifier == "online":
            own = {id(p) for p in self.model.online_classifier.parameters()}
            groups = {name: [p for p in params if id(p) not in own] for name, params in groups.items()}
            groups["classifier"] = list(self.model.online_classifier.parameters())
        optimizers = {name: torch.optim.Adam(params, lr=config.lr) for name, params in groups.items()}
        return Training(self.model, groups, optimizers)

    def batch(self, step: int, rank: int, world: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self.dataset.train_batch(step, self.config.batch_size, self.config.seed, rank, world)
        return images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)

    def losses(self, batch: tuple[torch.Tensor, torch.Tensor]):
        images, labels = batch
        losses = self.model.losses(images)
        if self.config.classifier == "online":
            logits = self.model.online_classifier(self.model.probe_latent(images).detach().flatten(1))
            cross_entropy = torch.nn.functional.cross_entropy(logits, labels)
            losses.per_group["classifier"] = cross_entropy
        return losses

    @torch.no_grad()
    def evaluate(self, step: int, run_dir) -> dict:
        model, config = self.model, self.config
        test_images, _ = self.dataset.test_set()
        sample = test_images[: config.eval_images].to(self.device)
        was_training = model.training
        model.eval()
        try:
            test_mse = float(torch.nn.functional.mse_loss(model.decode(model.encode(sample)), sample))
        finally:
            model.train(was_training)
        start, end = self._pairs()
        decoded = decode_interpolations(model, start.to(self.device), end.to(self.device), FRAMES)
        plots.save_interpolation_grid(
            decoded[:_GRID_PAIRS], run_dir / "interpolation.png", f"{config.model} on {config.dataset}, step {step}"
        )
        plots.save_frames(decoded[:_GRID_PAIRS], run_dir / FRAMES_PNG)
        metrics = {"test_mse": test_mse}
        if config.classifier == "online":  # ACAI's, at every evaluation (the summary's: the whole test set)
            metrics["probe_accuracy"] = self._online_accuracy(config.eval_images)
        if config.dataset == "lines":
            metrics.update(
                interpolation_metrics(decoded, distance=config.mean_distance, degenerate=config.smoothness_degenerate)
            )
        return metrics

    def _pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.config.dataset == "lines" and self.config.interpolation_pairs == "turns":
            start, end = lines.interpolation_pair_angles(self.config.eval_pairs)
            return lines.draw_lines(start), lines.draw_lines(end)
        test_images, _ = self.dataset.test_set()
        pairs = min(self.config.eval_pairs, test_images.shape[0] // 2)
        return test_images[:pairs], test_images[pairs : 2 * pairs]

    def final_metrics(self, records: list[dict]) -> dict:
        channels, height, width = self.model.latent_shape
        metrics = {"latent_map": f"{height}×{width}×{channels}"}
        if self.model_options:
            metrics["model_options"] = self.model_options
        metrics["classifier_definition"] = self.config.classifier
        if self.config.classifier == "online":
            metrics["probe_accuracy"] = self._online_accuracy()
        if self.config.dataset == "lines":
            # ACAI's Table 1 takes the median of the last 20 evaluations, not the last one.
            evals = [r for r in records if r["kind"] == "eval" and "mean_distance" in r][-MEDIAN_OF_LAST:]
            if evals:
                for key in ("mean_distance", "smoothness"):
                    metrics[key] = float(statistics.median(r[key] for r in evals))
                metrics["interpolation_evaluations"] = len(evals)
            # Which definitions the interpolation metrics used.
            metrics["interpolation_pairs"] = self.config.interpolation_pairs
            metrics["mean_distance_definition"] = self.config.mean_distance
            metrics["smoothness_degenerate"] = self.config.smoothness_degenerate
        trains = [r for r in records if r["kind"] == "train"]
        if trains:
            metrics["train_mse"] = trains[-1].get("loss/mse")
        if self.config.downstream:
            metrics.update(self._downstream())
        return metrics

    @torch.no_grad()
    def _online_accuracy(self, count: int | None = None) -> float:
        """The online classifier's accuracy on the first `count` test images (None: all of them)."""
        test_images, test_labels = (part[:count] for part in self.dataset.test_set())
        test_z = encode_all(self.model, test_images, self.device)
        predictions = self.model.online_classifier(test_z).argmax(1).cpu()
        return float((predictions == test_labels.cpu()).double().mean())

    def _downstream(self) -> dict:
        """ACAI §4 after training: k-means on the frozen latents (and --classifier lbfgs's classifier)."""
        config, classes = self.config, self.dataset.num_classes
        acai = config.clustering == "acai"
        lbfgs = config.classifier == "lbfgs"
        count = max(config.probe_images if lbfgs else 0, config.cluster_images if acai else 0, 1)
        train_images, train_labels = self.dataset.probe_train_set(count)
        test_images, test_labels = self.dataset.test_set()
        train_z = encode_all(self.model, train_images, self.device)
        test_z = encode_all(self.model, test_images, self.device)
        probe = config.probe_images
        clusters = cluster_latents(
            test_z,
            classes,
            train_z=train_z[: config.cluster_images] if acai else None,
            restarts=config.kmeans_restarts,
            seed=config.seed,
        )
        definition = config.clustering
        if config.dataset == "lines":
            accuracy = circular_matched_accuracy(clusters, self.dataset.test_angles(), classes)
            definition += f", best of {BIN_OFFSETS} bin offsets"
        else:
            accuracy = matched_accuracy(clusters, test_labels, classes)
        metrics = {"clustering_accuracy": accuracy, "clustering_definition": definition}
        if lbfgs:
            metrics["probe_accuracy"] = linear_probe_accuracy(
                train_z[:probe], train_labels[:probe], test_z, test_labels, classes
            )
        return metrics
