"""How a field of a task's config dataclass declares its command-line option and its check, once.

`latentops <command>` builds its argparse options from these fields (latentops.cli) and
`validate(config)` checks a config made in Python the same way, with messages that name the flag.
A field's flag is its name with dashes (batch_size: --batch-size); a bool that defaults to True is
switched off by --no-NAME, one that defaults to False switched on by --NAME. Fields without a
default are the required options, and stay positional in the dataclass's __init__."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple


class Check(NamedTuple):
    """A condition on an option's value; `what` completes "--flag must be ..."."""

    what: str
    holds: Callable[[Any], bool]


COUNT = Check("an int ≥ 1", lambda v: not isinstance(v, bool) and isinstance(v, int) and v >= 1)
POSITIVE = Check("a number > 0", lambda v: isinstance(v, (int, float)) and v > 0 and math.isfinite(v))


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str | None = None,
    choices=None,
    check: Check | None = None,
    metavar: str | None = None,
    positional: bool = False,
) -> Any:
    """A config field that is also a command-line option. A default of None means "unset" and
    passes the check; choices are listed in --help and enforced. positional: a required field
    given without its flag (`latentops compress RUN ...`)."""
    metadata = {
        "help": help,
        "choices": tuple(choices) if choices is not None else None,
        "check": check,
        "metavar": metavar,
        "positional": positional,
    }
    required = default is dataclasses.MISSING
    return dataclasses.field(default=default, metadata=metadata, kw_only=not required)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def validate(config) -> None:
    """ValueError naming the flag of the first field whose value breaks its choices or check."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if value is None and field.default is None:
            continue
        choices, check = field.metadata.get("choices"), field.metadata.get("check")
        if choices is not None and value not in choices:
            raise ValueError(f"{flag(field.name)} must be one of {choices}, got {value!r}")
        if check is not None and not check.holds(value):
            raise ValueError(f"{flag(field.name)} must be {check.what}, got {value!r}")
