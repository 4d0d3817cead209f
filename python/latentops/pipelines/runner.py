"""The one training loop behind every `latentops` training command: it runs a Task (pipelines/task.py)
data-parallel under torchrun, evaluates and checkpoints at its cadence, resumes bit for bit, and
writes metrics.jsonl, metrics.json and loss.png to the run folder."""

from __future__ import annotations

import contextlib
import sys
import time

import torch

from latentops import _backend
from latentops.pipelines import checkpoint, distributed, plots, run_options
from latentops.pipelines.options import validate
from latentops.pipelines.run_folder import RunFolder, RunFolderBusy
from latentops.pipelines.task import Task

# The runner's part of a run's identity (the data stream and the random streams depend on them);
# a task adds its own fields (Task.identity).
IDENTITY = ("batch_size", "seed")


def run(task_class: type[Task], config) -> dict:
    """Train (or resume) the run `config` describes; returns the summary also written to
    RUN_DIR/metrics.json (on rank 0; other ranks return {})."""
    missing = run_options.missing(type(config))
    if missing:
        raise TypeError(f"{type(config).__name__} lacks the runner's options {missing}")
    validate(config)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    task = task_class(config)  # loads its data before any process group: a missing file fails fast
    context = distributed.setup(config.device)
    try:
        backend = _backend.use_backend("torch") if config.backend == "torch" else contextlib.nullcontext()
        with backend:
            return Runner(task, context).run()
    finally:
        distributed.teardown(context)


def _forked_rng(device: torch.device):
    """Random draws inside leave training's streams where they were."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


class Runner:
    def __init__(self, task: Task, context: distributed.Context):
        self.task, self.context = task, context
        self.config = config = task.config
        self.device = context.device
        self.folder = RunFolder(config.out)
        torch.manual_seed(config.seed)
        self.training = task.build(self.device)
        if context.distributed:
            distributed.broadcast_module(self.training.model)
        # Each rank draws its own noise, dropout masks, α (rank 0 continues the seed's stream).
        torch.manual_seed(config.seed + 7919 * context.rank)
        self.step = 0
        self.counters = {"train_seconds": 0.0, "train_images": 0}
        self.records: list[dict] = []

    # -- setup -------------------------------------------------------------------------------

    def _lock(self) -> None:
        """Rank 0 takes the run folder (only it writes there); under torchrun every rank then
        learns whether it did, so all of them stop at once rather than wait at a barrier for a
        rank 0 that has gone."""
        error = None
        if self.context.main:
            try:
                self.folder.lock()
            except (RunFolderBusy, ValueError, OSError) as caught:
                error = caught
        if self.context.distributed:
            shared = distributed.gather_objects(error)[0]  # a collective: every rank must call it
            error = error or shared  # rank 0 raises its own, traceback and all
        if error is not None:
            raise error

    def _start(self) -> None:
        found = self.folder.checkpoint_to_resume(self.config.resume)
        if found is None and self.config.resume and self.context.main and self.folder.holds_run():
            print(
                f"latentops: --resume: {str(self.folder.path)!r} holds no checkpoint yet (its run stopped "
                "before the first); starting from step 0",
                file=sys.stderr,
            )
        if found is not None:
            self.folder.check_identity(self.config, (*self.task.identity, *IDENTITY))
            training = self.training
            state = checkpoint.load(found, training.model, training.optimizers, self.device, training.schedulers)
            self.step = int(state["step"])
            self.counters = dict(state["counters"])
            ranks = state["rng"]
            if len(ranks) != self.context.world:
                raise ValueError(
                    f"checkpoint {found} was written by {len(ranks)} processes; resume "
                    f"it with as many (got {self.context.world})"
                )
            checkpoint.set_rng_state(ranks[self.context.rank], self.device)
            self.records = self.folder.records(up_to_step=self.step)
        if self.context.distributed:  # every rank has looked at the folder before rank 0 writes
            torch.distributed.barrier()
        if self.context.main:
            self.folder.start(self.config, self.records)

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> dict:
        self._lock()
        try:
            return self._run()
        finally:
            self.folder.unlock()

    def _run(self) -> dict:
        self._start()
        config = self.config
        eval_interval = run_options.eval_interval(config)
        checkpoint_interval = run_options.checkpoint_interval(config)
        bar = self._progress_bar()
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
                due_eval = self.step % eval_interval == 0 or last
                due_checkpoint = self.step % checkpoint_interval == 0 or last
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
                    shown = f"loss/{self.task.progress_loss}"
                    bar.set_postfix(
                        loss=f"{record[shown]:.4g}" if shown in record else "", img_s=f"{record['images_per_s']:.0f}"
                    )
                    running, interval_steps = {}, 0
                    if due_eval:
                        self._evaluate()
                    if due_checkpoint:
                        self._checkpoint()
                    interval_start = time.perf_counter()
        finally:
            bar.close()
        return self._finish()

    def _progress_bar(self):
        from tqdm.auto import tqdm

        # Redirected to a file, a bar redrawn 10 times a second would fill it.
        return tqdm(
            total=self.config.steps,
            initial=self.step,
            unit="step",
            dynamic_ncols=True,
            mininterval=0.1 if sys.stderr.isatty() else 30.0,
            desc="/".join(map(str, self.task.describe().values())),
            disable=not (self.config.progress and self.context.main),
        )

    def _train_step(self) -> dict[str, torch.Tensor]:
        context, training = self.context, self.training
        batch = self.task.batch(self.step, context.rank, context.world)
        for optimizer in training.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        losses = self.task.losses(batch)
        items = list(losses.per_group.items())
        for i, (group, loss) in enumerate(items):
            # Each group's loss moves only its own parameters (the critic's loss not the
            # autoencoder, and the reverse); the graph is shared, so keep it until the last.
            torch.autograd.backward(loss, inputs=training.groups[group], retain_graph=i < len(items) - 1)
        if context.distributed:
            for params in training.groups.values():
                distributed.average_gradients(params, context.world)
        for optimizer in training.optimizers.values():
            optimizer.step()
        for scheduler in training.schedulers.values():
            scheduler.step()
        self.task.after_step(self.step)
        logs = dict(losses.logs)
        for group, loss in items:
            logs[group] = loss.detach()
        return logs

    def _log(self, running: dict, steps: int, images_per_s: float) -> dict:
        names = list(running)
        values = torch.stack([running[n].float() for n in names]).div_(max(steps, 1)).tolist() if names else []
        record = {
            "kind": "train",
            "step": self.step,
            "images_per_s": images_per_s,
            **{f"loss/{n}": v for n, v in zip(names, values)},
        }
        self._append(record)
        return record

    def _append(self, record: dict) -> None:
        self.records.append(record)
        if self.context.main:
            self.folder.append(record)

    # -- evaluation, checkpoints, outputs ----------------------------------------------------

    def _evaluate(self) -> None:
        """Rank 0 evaluates (with its own random streams untouched); the others wait."""
        if self.context.main:
            with _forked_rng(self.device):
                record = {"kind": "eval", "step": self.step, **self.task.evaluate(self.step, self.folder.path)}
            self._append(record)
        if self.context.distributed:
            torch.distributed.barrier()

    def _checkpoint(self) -> None:
        rng = distributed.gather_objects(checkpoint.rng_state(self.device))
        if self.context.main:
            training = self.training
            self.folder.sync_records()  # a resume from this checkpoint needs its records
            checkpoint.save(
                self.folder.path,
                self.step,
                training.model,
                training.optimizers,
                rng,
                self.counters,
                training.schedulers,
            )
        if self.context.distributed:
            torch.distributed.barrier()

    def _finish(self) -> dict:
        if not self.context.main:
            return {}
        config, counters = self.config, self.counters
        described = self.task.describe()
        summary = {
            "task": self.task.name,
            **described,
            "steps": self.step,
            "batch_size": config.batch_size,
            "processes": self.context.world,
            "device": str(self.device),
            "backend": config.backend,
            "images_per_s": (
                counters["train_images"] / counters["train_seconds"] if counters["train_seconds"] > 0 else None
            ),
        }
        evals = [r for r in self.records if r["kind"] == "eval"]
        if evals:
            summary.update({k: v for k, v in evals[-1].items() if k not in ("kind", "step")})
        with _forked_rng(self.device):
            summary.update(self.task.final_metrics(self.records))
        self.folder.write_summary(summary)
        plots.save_loss_curve(self.records, self.folder.path / "loss.png", " on ".join(map(str, described.values())))
        return summary
