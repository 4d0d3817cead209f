"""The `latentops` command: `latentops train ...` and `latentops report RUN_DIR...`."""

from __future__ import annotations

import argparse
import sys

from latentops.data import DATASETS
from latentops.models import MODELS


def _parser() -> argparse.ArgumentParser:
    from latentops.pipelines.train import BACKENDS, TrainConfig

    defaults = TrainConfig(model="baseline", out="")
    parser = argparse.ArgumentParser(prog="latentops", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train", help="train an autoencoder of the zoo (under torchrun: data-parallel)",
        description="Train one model; writes metrics.jsonl, metrics.json, checkpoints, "
                    "interpolation.png and loss.png to --out. Under `torchrun --nproc-per-node P` "
                    "the P processes share each global batch (gloo on CPU, nccl on CUDA).")
    train.add_argument("--model", required=True, choices=list(MODELS))
    train.add_argument("--dataset", default=defaults.dataset, choices=list(DATASETS))
    train.add_argument("--data-dir", help="folder with the mnist / svhn / cifar10 files")
    train.add_argument("--steps", type=int, default=defaults.steps,
                       help="training steps (default: ACAI's 2^24 images at batch 64)")
    train.add_argument("--batch-size", type=int, default=defaults.batch_size,
                       help="global batch size, split evenly across processes")
    train.add_argument("--latent", type=int, default=defaults.latent,
                       help="channels of the 4×4 latent map (the latent has 16·LATENT numbers)")
    train.add_argument("--depth", type=int, default=defaults.depth, help="channels of the first scale")
    train.add_argument("--scales", type=int, default=None,
                       help="2× poolings (default: down to a 4×4 latent map)")
    train.add_argument("--lr", type=float, default=defaults.lr)
    train.add_argument("--device", default=defaults.device, help="auto (cuda if present), cpu, cuda, cuda:N")
    train.add_argument("--backend", default=defaults.backend, choices=list(BACKENDS),
                       help="ops: latentops' kernels; torch: the pure-torch reference (to compare throughput)")
    train.add_argument("--threads", type=int, default=None,
                       help="CPU threads for torch (default: torch's choice; on a loaded machine "
                            "fewer threads can be faster)")
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument("--eval-every", type=int, default=None, help="steps between evaluations (default: steps/10)")
    train.add_argument("--checkpoint-every", type=int, default=None,
                       help="steps between checkpoints (default: at each evaluation)")
    train.add_argument("--log-every", type=int, default=defaults.log_every)
    train.add_argument("--eval-pairs", type=int, default=defaults.eval_pairs,
                       help="interpolation pairs per evaluation")
    train.add_argument("--eval-images", type=int, default=defaults.eval_images,
                       help="test images whose reconstruction error each evaluation reports")
    train.add_argument("--kmeans-restarts", type=int, default=defaults.kmeans_restarts)
    train.add_argument("--probe-images", type=int, default=defaults.probe_images,
                       help="training images for the frozen-latent classifier")
    train.add_argument("--no-downstream", dest="downstream", action="store_false",
                       help="skip the final classifier and clustering evaluation")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    train.add_argument("--out", required=True, metavar="RUN_DIR")

    report = commands.add_parser("report", help="tabulate finished runs side by side",
                                 description="Markdown table (printed and written to OUT/report.md) "
                                             "and a combined PNG (OUT/report.png) of the runs.")
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    report.add_argument("--out", default=None, help="folder for report.md / report.png "
                                                    "(default: the first RUN_DIR's parent)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "train":
            import dataclasses
            import json

            from latentops.pipelines.train import TrainConfig, train

            fields = {f.name for f in dataclasses.fields(TrainConfig)}
            summary = train(TrainConfig(**{k: v for k, v in vars(args).items() if k in fields}))
            if summary:
                print(json.dumps(summary, indent=2))
        else:
            from latentops.pipelines.report import write_report

            text, md_path, png_path = write_report(args.run_dirs, args.out)
            print(text)
            print(f"wrote {md_path} and {png_path}")
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"latentops {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
