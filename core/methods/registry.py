"""Method names (as typed on the command line and shown in the app) -> their classes.

Lazy strings, so listing methods imports no torch and a method that fails to import does not
take the others down.
"""
from __future__ import annotations

import importlib

METHODS: dict[str, str] = {
    "deepdiffusion": "core.methods.deepdiffusion:DeepDiffusion",
    "pica": "core.methods.pica:PICA",
    "deepcluster": "core.methods.deepcluster:DeepCluster",
    "fixmatch": "core.methods.fixmatch:FixMatch",
    "residual-ssl": "core.methods.residual_ssl:ResidualSSL",
    "simclr": "core.methods.ssl_baselines:SimCLR",
    "byol": "core.methods.ssl_baselines:BYOL",
    "simsiam": "core.methods.ssl_baselines:SimSiam",
    "masked": "core.methods.ssl_baselines:MaskedVolume",
}

# Supervised stages that start from a trained run (``latentmap finetune``).
FINETUNERS: dict[str, str] = {
    "cluster-head": "core.methods.finetune:ClusterFinetune",
    "residual-ssl": "core.methods.residual_ssl:AnomalyFinetune",
}


def _load(table: dict, name: str):
    try:
        target = table[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(sorted(table))}") from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def get_method(name: str):
    return _load(METHODS, name)


def get_finetuner(name: str):
    return _load(FINETUNERS, name)


def available(table: dict | None = None) -> dict[str, str]:
    """Names whose modules import; the value is the error text for those that do not."""
    table = METHODS if table is None else table
    out = {}
    for name in table:
        try:
            _load(table, name)
            out[name] = ""
        except Exception as exc:  # noqa: BLE001 - shown to the user, not swallowed
            out[name] = f"{type(exc).__name__}: {exc}"
    return out
