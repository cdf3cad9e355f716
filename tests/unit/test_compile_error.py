"""Which errors count as torch.compile's (the trainer then trains on eager) and which are the model's."""

import pytest

from whyrec.llm.compile_policy import is_compile_error


def _raised_in(filename: str, error: str = "AssertionError('sources must not be empty for symbol s77')"):
    try:
        exec(compile(f"raise {error}", filename, "exec"))
    except Exception as e:  # noqa: BLE001
        return e
    raise AssertionError("nothing raised")


@pytest.mark.parametrize("where", ["/venv/site-packages/torch/fx/experimental/symbolic_shapes.py",
                                   "/venv/site-packages/torch/_dynamo/guards.py",
                                   "/venv/site-packages/torch/_inductor/codegen.py"])
def test_a_plain_error_raised_inside_the_compiler_is_a_compile_error(where):
    assert is_compile_error(_raised_in(where))


def test_the_models_own_errors_are_not():
    assert not is_compile_error(_raised_in("/work/src/whyrec/methods/gavamoe/model.py", "ValueError('bad shape')"))
    assert not is_compile_error(_raised_in("/venv/site-packages/torch/nn/modules/linear.py", "RuntimeError('mat1')"))
    assert not is_compile_error(ValueError("never raised"))  # no traceback


def test_dynamo_exception_types_are_compile_errors():
    from torch._dynamo.exc import Unsupported

    assert is_compile_error(Unsupported.__new__(Unsupported))


def test_torchs_guard_error_log_is_dropped_only_while_compiled(caplog):
    """The fallback prints one line with the reason; torch's own ~30-line guard log before it is noise."""
    import logging

    from whyrec.llm.compile_policy import quiet_guard_errors

    guards = logging.getLogger("torch._guards")
    with caplog.at_level(logging.ERROR), quiet_guard_errors():
        guards.error("Error while creating guard:")
        logging.getLogger("torch._dynamo").error("other compiler news")
    assert [r.name for r in caplog.records] == ["torch._dynamo"]
    with caplog.at_level(logging.ERROR):
        guards.error("Error while creating guard:")  # outside the block: logged as torch logs it
    assert [r.name for r in caplog.records] == ["torch._dynamo", "torch._guards"]
