from dataclasses import dataclass

from whyrec.fingerprint import differences, digest


@dataclass
class _Cfg:
    lr: float = 0.01
    steps: int = 10


def test_digest_ignores_key_order_and_sees_values():
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})
    assert digest({"a": 1}) != digest({"a": 2})
    assert digest(_Cfg()) == digest({"lr": 0.01, "steps": 10})


def test_differences_name_dotted_fields():
    old = {"train": _Cfg(), "data": "abc"}
    new = {"train": _Cfg(lr=0.5), "data": "abc", "seed": 1}
    assert differences(old, new) == ["seed (new)", "train.lr (0.01 -> 0.5)"]
    assert differences(old, old) == []
