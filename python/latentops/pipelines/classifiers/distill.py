"""`latentops distill`: a student classifier trained from a finished `latentops classify` teacher run
(Lassance et al., "Deep geometric knowledge distillation with graphs", code cadurosar/graph_kd):
alone (cross-entropy only), Hinton KD, RKD-D, the latent-geometry-graph loss (LGG), or HKD + LGG.
The student learns on the teacher's dataset and split; the teacher is frozen."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F

from latentops.models.classifiers import CLASSIFIERS
from latentops.nn import GraphDistillationLoss
from latentops.pipelines.classifiers.config import TrainingOptions
from latentops.pipelines.classifiers.report import DistillationReport
from latentops.pipelines.classifiers.task import ClassifierTask, load_classifier
from latentops.pipelines.options import POSITIVE, Check, option
from latentops.pipelines.run_folder import CONFIG_JSON, read_json_object

METHODS = ("alone", "hkd", "rkd", "lgg", "hkd+lgg")


def _layers_ok(text) -> bool:
    return isinstance(text, str) and (text == "all" or all(p.strip().isdigit() for p in text.split(",")))


LAYERS = Check("'all' or comma-separated tap indices (e.g. 0,1,2)", _layers_ok)


@dataclasses.dataclass(kw_only=True)
class _Student:
    teacher: str = option(metavar="TEACHER_RUN", help="a finished `latentops classify` run folder")
    arch: str = option("preact-small", choices=CLASSIFIERS, help="the student (latentops.models.classifiers)")
    width: float | None = option(None, check=POSITIVE, help="the student's width (preact; wrn: widening factor)")
    method: str = option("lgg", choices=METHODS)
    layers: str = option("all", check=LAYERS, help="the taps whose graphs LGG compares, in both networks")
    lgg_weight: float = option(25.0, check=POSITIVE, help="the authors': 25")
    rkd_weight: float = option(25.0, check=POSITIVE, help="the authors': 25")
    hkd_weight: float = option(16.0, check=POSITIVE, help="λ of Hinton's KL term (the authors' CIFAR-100 scripts: 16)")
    temperature: float = option(4.0, check=POSITIVE, help="τ of Hinton's KD")


@dataclasses.dataclass(kw_only=True)
class DistillConfig(TrainingOptions, _Student):  # fields: _Student's, then TrainingOptions'
    """One `latentops distill` run."""


def hinton_kd(student_logits, teacher_logits, temperature: float) -> torch.Tensor:
    """KL(softmax(t/τ) ‖ softmax(s/τ)), mean over the batch."""
    return F.kl_div(
        F.log_softmax(student_logits / temperature, 1), F.log_softmax(teacher_logits / temperature, 1),
        reduction="batchmean", log_target=True,
    )  # fmt: skip


def rkd_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """RKD-D (Park et al., 2019): smooth-L1 between the batch's pairwise distances of student and
    teacher embeddings, each divided by its mean over the distinct pairs."""

    def normalized(x):
        d = torch.cdist(x.flatten(1), x.flatten(1))
        off = ~torch.eye(len(x), dtype=torch.bool, device=x.device)
        return d / d[off].mean().clamp_min(1e-12)

    with torch.no_grad():
        target = normalized(teacher)
    return F.smooth_l1_loss(normalized(student), target)


class DistillTask(ClassifierTask):
    name = "distillation"
    command = "distill"
    help = "train a student classifier from a teacher run: alone, Hinton KD, RKD-D, LGG or HKD+LGG"
    description = (
        "Train a student (latentops.models.classifiers) on the teacher run's dataset and split, with "
        "cross-entropy plus the chosen distillation loss; writes what `latentops classify` writes."
    )
    config_class = DistillConfig
    report = DistillationReport()
    identity = (
        *("teacher", "arch", "width", "method", "layers", "lgg_weight", "rkd_weight", "hkd_weight", "temperature"),
        *("steps", "lr", "momentum", "weight_decay", "lr_milestones", "lr_gamma", "augment"),
        *("loss", "smoothness", "smoothness_power", "graph_k", "parseval"),
    )

    def __init__(self, config: DistillConfig, dataset=None):
        self.teacher_config = read_json_object(_teacher_config_path(config.teacher))
        if "teacher" in self.teacher_config:
            raise ValueError(f"--teacher {config.teacher!r} is itself a distilled run; give a `latentops classify` run")
        if dataset is None:
            from latentops.data import load_dataset

            saved = self.teacher_config
            dataset = load_dataset(
                saved.get("dataset", ""), saved.get("data_dir"), train_per_class=saved.get("train_per_class")
            )
        super().__init__(config, dataset)
        self.graph_loss = GraphDistillationLoss(normalize="sym")
        self._teacher = None

    def describe(self) -> dict:
        return {"arch": self.config.arch, "dataset": self.dataset.name, "variant": self.config.method}

    def teacher(self) -> torch.nn.Module:
        """The frozen teacher, loaded at the first step that needs it (a resumed or evaluated
        student needs the teacher's run only to train)."""
        if self._teacher is None:
            self._teacher = load_classifier(self.config.teacher, self.device).model.requires_grad_(False)
        return self._teacher

    def _select(self, taps: list[torch.Tensor], who: str) -> list[torch.Tensor]:
        if self.config.layers == "all":
            return taps
        chosen = [int(p) for p in self.config.layers.split(",")]
        if max(chosen) >= len(taps):
            raise ValueError(f"--layers {self.config.layers!r}: the {who} has {len(taps)} taps (0 to {len(taps) - 1})")
        return [taps[i] for i in chosen]

    def objective(self, images, labels, logits, taps):
        loss, logs = super().objective(images, labels, logits, taps)
        config, method = self.config, self.config.method
        if method == "alone":
            return loss, logs
        with torch.no_grad():
            teacher_logits, teacher_taps = self.teacher()(images, return_taps=True)
        if "hkd" in method:
            kd = hinton_kd(logits, teacher_logits, config.temperature)
            loss = loss + config.hkd_weight * kd
            logs["hkd"] = kd.detach()
        if method == "rkd":  # on the embeddings the heads read: the last taps
            rkd = rkd_distance(taps[-1], teacher_taps[-1])
            loss = loss + config.rkd_weight * rkd
            logs["rkd"] = rkd.detach()
        if "lgg" in method:
            student, teacher = self._select(taps, "student"), self._select(teacher_taps, "teacher")
            if len(student) != len(teacher):
                raise ValueError(
                    f"--layers: LGG compares as many taps in both networks; the student gives {len(student)}, "
                    f"the teacher {len(teacher)} (choose some with --layers)"
                )
            lgg = self.graph_loss(student, teacher) / len(student)  # the authors' mean over layers
            loss = loss + config.lgg_weight * lgg
            logs["lgg"] = lgg.detach()
        return loss, logs


def _teacher_config_path(teacher: str) -> Path:
    path = Path(teacher) / CONFIG_JSON
    if not path.is_file():
        raise FileNotFoundError(f"--teacher {teacher!r} has no {CONFIG_JSON}: not a `latentops classify` run folder")
    return path


__all__ = ["METHODS", "DistillConfig", "DistillTask", "hinton_kd", "rkd_distance"]
