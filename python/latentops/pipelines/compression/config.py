"""The options of `latentops compress`, in the order its --help lists them, and the parsing of the
ones that are lists (--per-layer, --layers, the grid's values)."""

from __future__ import annotations

import dataclasses

from latentops.codecs.quantizers import MAX_LEVELS, METHODS
from latentops.pipelines import run_options as run
from latentops.pipelines.options import COUNT, POSITIVE, Check, option

# sHAM's grid (Marinò et al., ICPR 2020, Sect. IV): pruning percentages and codebook sizes.
PAPER_GRID_PRUNE = "0.3,0.4,0.5,0.6,0.7,0.8,0.9,0.95,0.96,0.97,0.98,0.99"
PAPER_GRID_K = "2,32,128,1024"


def _is_fraction(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1


def _is_levels(v) -> bool:
    return COUNT.holds(v) and v <= MAX_LEVELS


FRACTION = Check("a fraction in [0, 1)", _is_fraction)
LEVELS = Check(f"an int in [1, {MAX_LEVELS}]", _is_levels)


def parse_list(flag: str, text: str, kind, valid) -> list:
    """ "0.9,0.95" → [0.9, 0.95]: comma-separated values of `kind` that `valid` accepts, in order,
    without repeats; ValueError naming the flag otherwise."""
    try:
        values = [kind(part.strip()) for part in str(text).split(",")]
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated {kind.__name__} values, got {text!r}") from None
    bad = [v for v in values if not valid(v)]
    if bad or len(set(values)) != len(values):
        raise ValueError(f"{flag}: {bad[0] if bad else 'a repeated value'} is not allowed in {text!r}")
    return values


def parse_per_layer(text: str) -> dict[str, tuple[float | None, int | None]]:
    """ "head=0.5/128,hidden.0=0.9" → {"head": (0.5, 128), "hidden.0": (0.9, None)}: per layer, the
    fraction pruned and optionally k (either may be left out: "head=/128")."""
    overrides = {}
    for item in filter(None, (part.strip() for part in str(text).split(","))):
        name, sep, value = item.partition("=")
        prune, _, k = value.partition("/")
        try:
            override = (float(prune) if prune else None, int(k) if k else None)
        except ValueError:
            override = None
        if not sep or not name or override is None or override == (None, None) or name in overrides:
            raise ValueError(f"--per-layer must be NAME=P[/K],... (e.g. head=0.5/128), got {item!r} in {text!r}")
        if override[0] is not None and not _is_fraction(override[0]):
            raise ValueError(f"--per-layer {item!r}: the fraction pruned must be in [0, 1)")
        if override[1] is not None and not _is_levels(override[1]):
            raise ValueError(f"--per-layer {item!r}: k must be an int in [1, {MAX_LEVELS}]")
        overrides[name] = override
    return overrides


def _parses(parser) -> Check:
    def holds(text) -> bool:
        try:
            parser(text)
        except ValueError:
            return False
        return True

    return holds


PER_LAYER = Check("NAME=P[/K],... (e.g. head=0.5/128)", _parses(parse_per_layer))
LAYERS = Check("all, linear, conv or comma-separated layer names", lambda v: isinstance(v, str) and v.strip() != "")
GRID_PRUNE = Check("comma-separated fractions in [0, 1)", _parses(lambda t: parse_list("", t, float, _is_fraction)))
GRID_K = Check(f"comma-separated ints in [1, {MAX_LEVELS}]", _parses(lambda t: parse_list("", t, int, _is_levels)))
GRID_QUANTIZERS = Check(
    f"comma-separated quantizers of {METHODS}", _parses(lambda t: parse_list("", t, str, METHODS.__contains__))
)


@dataclasses.dataclass(kw_only=True)
class _Compression:
    """What `latentops compress` does to the trained model."""

    run: str = option(
        metavar="RUN",
        positional=True,
        help="a finished `latentops classify`, `distill` or `train` run folder (its latest checkpoint)",
    )
    prune: float = option(0.9, check=FRACTION, help="fraction of each layer's weights removed (the paper's p / 100)")
    quantizer: str = option("cws", choices=METHODS, help="weight sharing: k-means, probabilistic, uniform, ECSQ")
    k: int = option(32, check=LEVELS, help="codebook size per layer (ECSQ: the levels it starts from)")
    scope: str = option(
        "layer", choices=("layer", "global"), help="prune each layer to --prune, or with one threshold over all layers"
    )
    per_layer: str = option("", check=PER_LAYER, help="overrides per layer: NAME=P[/K],... (e.g. head=0.5/128)")
    layers: str = option(
        "all", check=LAYERS, help="the layers compressed: all (every Linear and Conv2d), linear, conv, or names"
    )
    lam: float = option(
        0.02, check=POSITIVE, help="ECSQ's λ, in units of the layer's mean |w| over its kept weights (its rate weight)"
    )
    lr: float | None = option(
        None,
        check=POSITIVE,
        help="fine-tuning rate, a tenth of it in each stage's second half (default: a tenth of the run's rate)",
    )
    time_batch: int = option(1, check=COUNT, help="rows of the input with which each layer is timed")
    grid: bool = option(
        False, help="sweep --grid-prune × --grid-k × --grid-quantizers (one run each) and plot accuracy against ψ"
    )
    grid_prune: str = option(PAPER_GRID_PRUNE, check=GRID_PRUNE, help="--grid's fractions pruned (the paper's)")
    grid_k: str = option(PAPER_GRID_K, check=GRID_K, help="--grid's codebook sizes (the paper's)")
    grid_quantizers: str = option(",".join(METHODS), check=GRID_QUANTIZERS, help="--grid's quantizers")


@dataclasses.dataclass(kw_only=True)
class CompressConfig(_Compression):
    """One `latentops compress` command. The runner's options apply to each fine-tuning stage."""

    steps: int = run.steps(500, help="fine-tuning steps after pruning, and again after quantization")
    batch_size: int = run.batch_size(100)
    device: str = run.device()
    backend: str = run.backend()
    threads: int | None = run.threads()
    seed: int = run.seed()
    eval_every: int | None = run.eval_every()
    checkpoint_every: int | None = run.checkpoint_every()
    log_every: int = run.log_every()
    resume: bool = run.resume()
    progress: bool = run.progress()
    out: str = run.out()
