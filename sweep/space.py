"""The search space of a sweep: which playground Config fields vary, and how.

A `Param` is one field with a range (float or int, linear or log scale) or a list of choices; a
`Space` is a tuple of them. Both are plain data (JSON in the study's storage) and are checked
against `playground.config.FIELDS` and `Config.validate`, so a trial can never ask for a config
the playground refuses. The text form is the command line's `--param` and the Sweep page's box:

    lr=1e-4:1            a float range; log scale because the field is log-scaled
    weight_decay=1e-6:1e-2:log
    depth=1:4            an int range (the field is an int)
    width=16:256:log
    optimizer=sgd,adam   choices
    batch_norm=false,true

Coarse to fine (`narrow`): a second study searches the region the best trials of the first found.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from playground.config import FIELDS, MAX_DEPTH, WORKLOAD_MODELS, Config, ConfigError

FLOAT, INT, CATEGORICAL = "float", "int", "categorical"
KINDS = (FLOAT, INT, CATEGORICAL)
# Fields a sweep does not search: the workload defines what the objective means, the device is
# where it runs, and the evaluation/probe cadences are how it is measured.
FIXED_FIELDS = ("workload", "device", "eval_every", "probe_every")
# Searched on a log scale unless told otherwise: the fields the playground already treats as
# log-scaled (lr, width, batch_size, ...) plus the penalties, which act by orders of magnitude
# (the tuning notes: "sample the learning rate and regularization strengths on a log scale").
LOG_DEFAULT = tuple(name for name, spec in FIELDS.items() if spec.log) + ("weight_decay", "l1")
# Spaces with more corner combinations than this are not checked corner by corner.
MAX_CORNERS = 4096


class SpaceError(ValueError):
    """A search-space entry is invalid; the message names the field and what it accepts."""


@dataclass(frozen=True)
class Param:
    """One searched field: a numeric range (`low`..`high`, `log` scale) or categorical `choices`."""

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple = ()

    def to_dict(self) -> dict:
        if self.kind == CATEGORICAL:
            return {"name": self.name, "kind": self.kind, "choices": list(self.choices)}
        return {"name": self.name, "kind": self.kind, "low": self.low, "high": self.high, "log": self.log}

    @classmethod
    def from_dict(cls, data: dict) -> "Param":
        if not isinstance(data, dict):
            raise SpaceError(f"a search-space entry must be an object, got {type(data).__name__}.")
        try:
            return cls(name=data["name"], kind=data["kind"], low=data.get("low"), high=data.get("high"),
                       log=bool(data.get("log", False)), choices=tuple(data.get("choices") or ()))
        except KeyError as e:
            raise SpaceError(f"a search-space entry lacks {e.args[0]!r}: {data!r}.") from None

    def text(self) -> str:
        """The `--param` form, e.g. "lr=0.0001:1:log" or "optimizer=sgd,adam"."""
        if self.kind == CATEGORICAL:
            return f"{self.name}=" + ",".join(value_text(c) for c in self.choices)
        scale = "log" if self.log else "lin"
        return f"{self.name}={value_text(self.low)}:{value_text(self.high)}:{scale}"

    def describe(self) -> str:
        """In words for a table: "0.0001 to 1, log scale", "one of sgd, adam"."""
        if self.kind == CATEGORICAL:
            return "one of " + ", ".join(value_text(c) for c in self.choices)
        return f"{value_text(self.low)} to {value_text(self.high)}" + (", log scale" if self.log else "")

    def suggest(self, trial):
        """The value an Optuna trial draws for this field."""
        if self.kind == CATEGORICAL:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == INT:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)


Space = tuple  # tuple[Param, ...], in the order the fields are drawn


def value_text(v, float_format: str = "g") -> str:
    """A field value as the space syntax writes it (true/false, 0.001, 64); floats with
    `float_format` (".3g" for a short description)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return format(v, float_format)
    return str(v)


def _parse_value(spec, text: str):
    t = text.strip()
    if spec.type is bool:
        low = t.lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise SpaceError(f"{spec.name}: {t!r} is not true or false.")
    if spec.type is str:
        return t
    try:
        value = float(t)
    except ValueError:
        raise SpaceError(f"{spec.name}: {t!r} is not a number.") from None
    if spec.type is int:
        if not value.is_integer():
            raise SpaceError(f"{spec.name}: {t!r} is not a whole number.")
        return int(value)
    return value


def parse_param(text: str) -> Param:
    """A Param from its `--param` text ("lr=1e-4:1:log", "optimizer=sgd,adam"); SpaceError if
    the field is unknown, not searchable, or the values are not of its type."""
    if "=" not in str(text):
        raise SpaceError(f"{text!r}: expected FIELD=LOW:HIGH[:log|:lin] or FIELD=A,B,...")
    name, _, rhs = str(text).partition("=")
    name = name.strip().replace("-", "_")
    spec = _searchable(name)
    rhs = rhs.strip()
    if not rhs:
        raise SpaceError(f"{name}: no values after '='.")
    if ":" in rhs:
        if spec.type not in (int, float):
            raise SpaceError(f"{name}: a range LOW:HIGH needs a numeric field; {name} takes {spec.describe()}, "
                             f"so list the choices: {name}=A,B.")
        parts = [p.strip() for p in rhs.split(":")]
        scale = None
        if len(parts) == 3:
            scale = parts[2].lower()
            if scale not in ("log", "lin"):
                raise SpaceError(f"{name}: the scale must be 'log' or 'lin', got {parts[2]!r}.")
        elif len(parts) != 2:
            raise SpaceError(f"{name}: expected LOW:HIGH or LOW:HIGH:log, got {rhs!r}.")
        low, high = _parse_value(spec, parts[0]), _parse_value(spec, parts[1])
        log = (name in LOG_DEFAULT) if scale is None else scale == "log"
        return Param(name, INT if spec.type is int else FLOAT, low, high, log)
    choices = tuple(_parse_value(spec, p) for p in rhs.split(",") if p.strip())
    if not choices:
        raise SpaceError(f"{name}: no choices after '='.")
    return Param(name, CATEGORICAL, choices=tuple(dict.fromkeys(choices)))


def parse_space(lines) -> Space:
    """A Space from `--param` texts (a list, or one string with one entry per line; blank lines and
    lines starting with # are skipped). A field given twice is an error."""
    if isinstance(lines, str):
        lines = lines.splitlines()
    params = []
    for line in lines:
        line = str(line).strip()
        if line and not line.startswith("#"):
            params.append(parse_param(line))
    return _unique(params)


def _unique(params) -> Space:
    seen = set()
    for p in params:
        if p.name in seen:
            raise SpaceError(f"{p.name} is given twice in the search space.")
        seen.add(p.name)
    return tuple(params)


def space_text(space: Space) -> str:
    """The Space as `--param` lines (what parse_space reads back)."""
    return "\n".join(p.text() for p in space)


def space_to_json(space: Space) -> list:
    return [p.to_dict() for p in space]


def space_from_json(data) -> Space:
    if not isinstance(data, list):
        raise SpaceError(f"a search space must be a list of entries, got {type(data).__name__}.")
    return _unique([Param.from_dict(d) for d in data])


def _searchable(name: str):
    spec = FIELDS.get(name)
    if spec is None:
        import difflib

        close = difflib.get_close_matches(name, list(FIELDS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        fields = ", ".join(n for n in FIELDS if n not in FIXED_FIELDS)
        raise SpaceError(f"{name!r} is not a config field{hint}; the fields a sweep can search: {fields}.")
    if name in FIXED_FIELDS:
        raise SpaceError(f"{name} cannot be searched: it stays fixed for the whole sweep (set it as a base "
                         f"config value instead).")
    return spec


def validate_space(space: Space, base: Config) -> Space:
    """Check every entry against the field's type and range and against `base` (SpaceError naming
    the entry): ranges low < high (log ranges above 0), choices allowed, and every corner of the
    space (each choice with each range end) a config the playground accepts, so no trial fails on
    an impossible combination such as depth 8 for a cnn."""
    if not isinstance(space, tuple) or not space:
        raise SpaceError("the search space is empty: give at least one field to search.")
    _unique(space)
    for p in space:
        spec = _searchable(p.name)
        if p.kind not in KINDS:
            raise SpaceError(f"{p.name}: kind must be one of {', '.join(KINDS)}, got {p.kind!r}.")
        if p.kind == CATEGORICAL:
            if not p.choices:
                raise SpaceError(f"{p.name}: no choices.")
            values = list(p.choices)
        else:
            if spec.type not in (int, float) or (p.kind == INT) != (spec.type is int):
                raise SpaceError(f"{p.name}: a {p.kind} range does not fit the field, which takes {spec.describe()}.")
            for v in (p.low, p.high):
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise SpaceError(f"{p.name}: range ends must be finite numbers, got {v!r}.")
            if not p.low < p.high:
                raise SpaceError(f"{p.name}: the low end ({value_text(p.low)}) must be below the high end "
                                 f"({value_text(p.high)}).")
            if p.log and p.low <= 0:
                raise SpaceError(f"{p.name}: a log-scale range must start above 0, got {value_text(p.low)} "
                                 f"(use {p.name}={value_text(p.low)}:{value_text(p.high)}:lin, or a low end "
                                 f"such as 1e-6).")
            values = [p.low, p.high]
        for v in values:
            try:
                base.replace(validate=True, check_device=False, **{p.name: v})
            except ConfigError as e:
                raise SpaceError(f"{p.name}={value_text(v)} is not allowed here: {e}") from None
    _check_corners(space, base)
    return space


def _check_corners(space: Space, base: Config) -> None:
    options = [list(p.choices) if p.kind == CATEGORICAL else [p.low, p.high] for p in space]
    if math.prod(len(o) for o in options) > MAX_CORNERS:
        return
    for combo in itertools.product(*options):
        changes = {p.name: v for p, v in zip(space, combo)}
        try:
            base.replace(validate=True, check_device=False, **changes)
        except ConfigError as e:
            shown = ", ".join(f"{k}={value_text(v)}" for k, v in changes.items())
            raise SpaceError(f"the combination {shown} is not a valid config: {e} Narrow the ranges or "
                             f"fix the base config.") from None


def trial_config(base: Config, params: dict) -> Config:
    """The Config of one trial: the base with the drawn values (validated; the device is checked
    where it trains)."""
    return base.replace(validate=True, check_device=False, **params)


def default_space(base: Config) -> Space:
    """What to search when nothing is said, for the base config's workload and model: the
    learning rate and weight decay on log scales, the optimizer, and the model's size (plus
    activation and batch norm for MLPs and CNNs)."""
    model = base.model if base.model in WORKLOAD_MODELS.get(base.workload, ()) else WORKLOAD_MODELS[base.workload][0]
    space = [
        Param("lr", FLOAT, 1e-4, 1.0, log=True),
        Param("weight_decay", FLOAT, 1e-6, 1e-2, log=True),
        Param("optimizer", CATEGORICAL, choices=("sgd", "momentum", "adam")),
    ]
    if model in ("mlp", "cnn"):
        space += [Param("activation", CATEGORICAL, choices=("relu", "tanh", "gelu")),
                  Param("batch_norm", CATEGORICAL, choices=(False, True))]
    space += [Param("depth", INT, 1, min(4, MAX_DEPTH[model])),
              Param("width", INT, 16, 256 if model in ("mlp", "cnn") else 128, log=True)]
    return validate_space(tuple(space), base)


# -- coarse to fine ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Narrowed:
    """A narrowed space, the trials it was drawn from, and what changed, in words."""

    space: Space
    top: list  # the (number, value) of the trials it keeps the region of
    changes: list[str]


def narrow(space: Space, results, *, maximize: bool, top_fraction: float = 0.25, min_top: int = 3,
           pad: float = 0.1) -> Narrowed:
    """Coarse to fine: the region of `space` where the best trials lie.

    results: (number, value, params) of completed trials. The best `top_fraction` of them (at
    least `min_top`) are kept; each range shrinks to what they span, widened by `pad` of the
    original range's width on each side (on the log scale for log ranges) and clipped to it; each
    list of choices keeps the ones they used. SpaceError when there is no completed trial."""
    done = [(n, v, p) for n, v, p in results if v is not None and math.isfinite(v)]
    if not done:
        raise SpaceError("no completed trial with a value yet: nothing to narrow around.")
    if not 0 < top_fraction <= 1:
        raise SpaceError(f"top_fraction must be in (0, 1], got {top_fraction!r}.")
    done.sort(key=lambda r: r[1], reverse=maximize)
    k = min(len(done), max(min_top, math.ceil(top_fraction * len(done))))
    best = done[:k]
    out, changes = [], []
    for p in space:
        values = [params[p.name] for _, _, params in best if p.name in params]
        if not values:
            out.append(p)
            continue
        if p.kind == CATEGORICAL:
            keep = tuple(c for c in p.choices if c in values)
            q = Param(p.name, CATEGORICAL, choices=keep or p.choices)
        else:
            q = _narrow_range(p, values, pad)
        if q != p:
            changes.append(f"{p.name}: {p.describe()} -> {q.describe()}")
        out.append(q)
    return Narrowed(tuple(out), [(n, v) for n, v, _ in best], changes)


def _round(x: float, direction) -> float:
    """`x` to 3 significant digits, rounded down (math.floor) or up (math.ceil): readable range
    ends that still hold every value they were drawn around."""
    if x == 0 or not math.isfinite(x):
        return x
    scale = 10 ** (math.floor(math.log10(abs(x))) - 2)
    return float(f"{direction(x / scale) * scale:.3g}")


def _narrow_range(p: Param, values: list, pad: float) -> Param:
    f = math.log10 if p.log else (lambda x: x)
    inv = (lambda y: 10 ** y) if p.log else (lambda y: y)
    lo0, hi0 = f(p.low), f(p.high)
    margin = pad * (hi0 - lo0)
    lo = max(lo0, f(min(values)) - margin)
    hi = min(hi0, f(max(values)) + margin)
    low, high = inv(lo), inv(hi)
    if p.kind == INT:
        low, high = max(int(p.low), math.floor(low + 1e-9)), min(int(p.high), math.ceil(high - 1e-9))
        if low >= high:  # one value left: keep a neighbour so it stays a range
            high = min(int(p.high), low + 1)
            low = high - 1
        return Param(p.name, INT, low, high, p.log)
    low, high = max(p.low, _round(low, math.floor)), min(p.high, _round(high, math.ceil))
    if not low < high:
        low, high = p.low, p.high
    return Param(p.name, FLOAT, low, high, p.log)
