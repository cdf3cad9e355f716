"""Old import path of `whyrec.methods.recexplainer.train` (cli.py and the registry still name it
until issue 18 phase D): every name is looked up there on first use (PEP 562)."""

from __future__ import annotations


def __getattr__(name: str):
    from whyrec.methods.recexplainer import train

    return getattr(train, name)
