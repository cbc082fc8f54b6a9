"""Reliability diagrams: read the `<split>/calibration` tables and compute the calibration error."""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS = ("bin_lo", "bin_hi", "count", "confidence", "accuracy")


class CalibrationTableError(ValueError):
    """A calibration table lacks the columns a reliability diagram needs."""


def table_frame(table: dict) -> pd.DataFrame:
    """The bins of one calibration table as a DataFrame with COLUMNS (empty bins kept)."""
    missing = [c for c in COLUMNS if c not in table]
    if missing:
        raise CalibrationTableError(f"calibration table lacks {', '.join(missing)} (has {', '.join(table)})")
    try:
        df = pd.DataFrame({c: np.asarray(table[c], dtype=float) for c in COLUMNS})
    except ValueError as e:
        raise CalibrationTableError(f"calibration table columns differ in length or are not numbers: {e}") from None
    return df


def expected_calibration_error(df: pd.DataFrame) -> float:
    """ECE = sum over bins of (bin count / total) * |accuracy - confidence| (Guo et al., 2017,
    "On Calibration of Modern Neural Networks")."""
    counts = df["count"].to_numpy(dtype=float)
    total = counts.sum()
    if total <= 0:
        return float("nan")
    gap = np.abs(df["accuracy"].to_numpy(dtype=float) - df["confidence"].to_numpy(dtype=float))
    gap = np.where(counts > 0, gap, 0.0)
    return float(np.nansum(counts / total * gap))


def table_ece(table: dict, df: pd.DataFrame) -> float:
    """The ECE stored with the table if it is a number, else computed from the bins."""
    stored = table.get("ece")
    if isinstance(stored, (int, float)) and np.isfinite(stored):
        return float(stored)
    return expected_calibration_error(df)
