"""How the dashboard writes numbers, values and run-derived text.

One number formatter for the whole app, `diagnostics.fmt` (the one the advice messages use), so a
value reads the same in a message, on an advice card and in a table: 3.955e-05 is "3.96e-05",
never "3.955" nor "0.000". Streamlit-free, so it is tested without a server.
"""

from __future__ import annotations

import re

from diagnostics import fmt as _fmt

# st.column_config.NumberColumn(format=TABLE_FORMAT) for measured values (losses, accuracies,
# ratios). Streamlit formats printf "%g" with sprintf-js as Number(x.toPrecision(4)): 3.955e-05
# shows as "0.00003955", 1.2e-08 as "1.2e-8", 0.12345 as "0.1235", where "%.4f" would show
# "0.0000". One more digit than `number` because a table sets runs side by side.
TABLE_FORMAT = "%.4g"
# Shown where a value is missing (a run without validation, an unset option): never "None".
MISSING = "—"

_EXPONENT = re.compile(r"(-?\d+)\.(\d+)e([+-]\d+)")


def number(x) -> str:
    """A number as the advice messages write it (diagnostics.fmt); integers exact with thousands
    separators (a step count must not read 1.2e+04); bools as yes/no; None as MISSING."""
    if x is None:
        return MISSING
    if hasattr(x, "item") and callable(x.item):  # numpy scalars
        x = x.item()
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    s = _fmt(x)
    # "3.00e-04" -> "3e-04", "1.50e-05" -> "1.5e-05": trailing zeros of a mantissa add nothing.
    m = _EXPONENT.fullmatch(s)
    if m:
        whole, frac, exp = m.groups()
        frac = frac.rstrip("0")
        s = f"{whole}{'.' + frac if frac else ''}e{exp}"
    return s


def value(v) -> str:
    """Any hyperparameter or evidence value in words: numbers via `number`, lists and dicts
    readable ("relu2: 0.734, relu3: 0.5"), strings as they are, an empty list as "none"."""
    if v is None:
        return MISSING
    if isinstance(v, str):
        return v
    if isinstance(v, dict):
        return ", ".join(f"{k}: {value(x)}" for k, x in v.items()) if v else "none"
    if isinstance(v, (list, tuple, set, frozenset)):
        return ", ".join(value(x) for x in v) if v else "none"
    if isinstance(v, (int, float, bool)) or (hasattr(v, "item") and callable(v.item)):
        return number(v)
    return str(v)


# Abbreviations of evidence keys (diagnostics' rules name them in snake_case) spelled out.
_WORDS = {"lr": "learning rate", "frac": "fraction", "grad": "gradient", "p90": "90th percentile",
          "n": "number of", "nonfinite": "non-finite", "ece": "calibration error (ECE)", "acc": "accuracy",
          "eval": "validation", "std": "standard deviation", "init": "initialization",
          "cs231n": "(CS231n)", "val": "validation", "max": "maximum", "min": "minimum"}


def words(key: str) -> str:
    """An evidence key in words: 'update_ratio_p90_first_half' -> 'Update ratio 90th percentile first
    half', 'lr_at_blowup' -> 'Learning rate at blowup'."""
    parts = [_WORDS.get(p, p) for p in str(key).replace("-", "_").split("_") if p]
    text = " ".join(parts)
    return text[:1].upper() + text[1:] if text else str(key)


# Characters Markdown (and Streamlit's extensions: :color[...] directives, $math$) gives a meaning
# anywhere in a line; escaped with a backslash they show as themselves. "#", "-", "+", "1." and the
# like only matter at the start of a line, so only a leading one is escaped (names keep their
# hyphens readable in the page source and in tests).
_MD_INLINE = re.compile(r"([\\`*_\[\]<>$:~&])")
_MD_LEADING = re.compile(r"^(\s*)(\d+(?=[.)](?:\s|$))|)([#+\-=.)])")
_WWW = re.compile(r"(?i)\b(www)\.")  # GFM links "www.x.com" even without a scheme


def md_escape(text) -> str:
    """Run-derived text (run names, layer names, messages quoting them) made safe to put inside
    st.markdown/st.caption/st.error: shown as written, never as Markdown, a link, an image or math.
    Line breaks become spaces (a new line could start a heading or a list)."""
    s = " ".join(str(text).splitlines())
    s = _MD_INLINE.sub(r"\\\1", s)
    s = _WWW.sub(r"\1\\.", s)
    return _MD_LEADING.sub(lambda m: f"{m.group(1)}{m.group(2) or ''}\\{m.group(3)}", s)
