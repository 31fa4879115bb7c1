"""The analysis' results as ``pandas.DataFrame`` tables, for notebooks.

``to_dataframe`` takes any result the analysis returns: a ``permutation_sensitivity`` result
(one row per mode), an encoding result (``measure_encoding``; one row per mode), recoverability
records (one row per distribution), partial-dependence curves (one row per mode and grid value),
or the per-distribution results of ``probe_dists`` / ``probe_run`` (their mode rows stacked,
with a ``distribution`` column). pandas is imported when called, not when this module is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def _curve_rows(curves: Mapping) -> list[dict]:
    rows = []
    for mode, curve in curves.items():
        for i, value in enumerate(curve["values"]):
            rows.append({
                "mode": mode, "kind": curve["kind"], "value": value, "label": curve["labels"][i],
                "mean_p": curve["mean_p"][i], "sem_p": curve["sem_p"][i],
                "mean_p_benign": curve["mean_p_benign"][i],
                "mean_p_malignant": curve["mean_p_malignant"][i],
            })
    return rows


def _rows(result) -> list[dict]:
    if isinstance(result, Mapping):
        if "modes" in result and isinstance(result["modes"], Sequence):
            # permutation or encoding result: one row per mode, tagged with the distribution
            tags = {k: result[k] for k in ("model", "distribution") if result.get(k) is not None}
            return [{**tags, **record} for record in result["modes"]]
        if "modes" in result and isinstance(result["modes"], Mapping):  # partial_dependence.json
            tags = {"distribution": result["distribution"]} if "distribution" in result else {}
            return [{**tags, **row} for row in _curve_rows(result["modes"])]
        if "records" in result:  # recoverability.json
            return [dict(r) for r in result["records"]]
        if result and all(isinstance(v, Mapping) and "values" in v and "mean_p" in v
                          for v in result.values()):  # partial_dependence curves
            return _curve_rows(result)
        if result and all(isinstance(v, Mapping) and "modes" in v for v in result.values()):
            rows = []  # probe_dists / probe_run: distribution -> result
            for name, sub in result.items():
                rows += [{"distribution": name, **r} for r in _rows(sub)]
            return rows
    elif isinstance(result, Sequence) and all(isinstance(r, Mapping) for r in result):
        return [dict(r) for r in result]  # records, e.g. recoverability or decodability
    raise TypeError(
        "Expected a result of the sensitivity analysis: a permutation_sensitivity or "
        "measure_encoding result, recoverability records, partial-dependence curves or the "
        f"results of probe_dists / probe_run. Received: {type(result).__name__}"
    )


def to_dataframe(result):
    """A ``pandas.DataFrame`` of ``result`` (see the module doc for what each becomes).

    Raises:
        TypeError: ``result`` is none of the analysis' results.
    """
    import pandas as pd

    return pd.DataFrame(_rows(result))
