"""A tiny training configuration shared by the pipeline tests (seconds, not minutes)."""

from latentops.pipelines import TrainConfig


def tiny_config(out, model="baseline", **overrides) -> TrainConfig:
    settings = dict(
        model=model,
        out=str(out),
        dataset="lines",
        steps=6,
        batch_size=8,
        latent=2,
        depth=4,
        lr=1e-3,
        device="cpu",
        eval_every=3,
        checkpoint_every=2,
        log_every=1,
        eval_pairs=4,
        eval_images=64,
        downstream=False,
        kmeans_restarts=2,
        cluster_images=200,
        probe_images=200,
        progress=False,
    )
    settings.update(overrides)
    return TrainConfig(**settings)
