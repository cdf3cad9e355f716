"""The quickstart's defaults change without stranding folders made with the earlier ones."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from test_cache_keys_quickstart import _quickstart, _Stages

from whyrec.outputs import OutputConflict


def test_quickstart_folder_of_the_earlier_encoder_defaults_is_reused_not_refused(tmp_path, monkeypatch, capsys):
    import whyrec.encoders.train
    from whyrec.quickstart import EARLIER_LIGHTGCN, LIGHTGCN

    stages = _Stages(monkeypatch)
    used = []
    stub = whyrec.encoders.train.train_encoder
    monkeypatch.setattr(whyrec.encoders.train, "train_encoder", lambda *a, config, **kw: used.append(config) or
                        stub(*a, config=config, **kw))
    old, new = tmp_path / "old", tmp_path / "new"
    _quickstart(old, lightgcn=EARLIER_LIGHTGCN[0])  # as the quickstart made it before LIGHTGCN
    _quickstart(old)  # today's default (the CLI passes LIGHTGCN itself) keeps the folder's settings
    _quickstart(old, lightgcn=LIGHTGCN)
    assert used == [EARLIER_LIGHTGCN[0]] * 3 and stages.calls["eval"] == 1
    assert "earlier version's encoder settings" in capsys.readouterr().out
    _quickstart(new)
    assert used[-1] == LIGHTGCN
    # a field TrainConfig gained later is left out while unset, as in folders made before it
    from whyrec.outputs import read_marker

    assert "batch_tokens" not in read_marker(new)["fingerprint"]["train"]
    with pytest.raises(OutputConflict) as refused:  # a setting the user chose is still checked
        _quickstart(old, lightgcn=replace(LIGHTGCN, dim=32))
    assert [d.split()[0] for d in refused.value.differences] == ["lightgcn.batch_size", "lightgcn.dim", "lightgcn.lr"]
    _quickstart(old, overwrite=True)
    assert used[-1] == LIGHTGCN and json.loads((old / "encoder" / "made_by.json").read_text())
