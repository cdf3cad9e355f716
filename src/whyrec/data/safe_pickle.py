"""Restricted unpickling for pickles that come from users (XRec's tst.pkl, para_dict.pickle).

`pickle.load` can run arbitrary code. This unpickler only admits the classes that plain
pandas DataFrames, numpy arrays and builtin containers need; anything else is refused
with a message naming the class.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

from whyrec.utils import WhyrecError

_ALLOWED_MODULE_PREFIXES = ("pandas.", "numpy")
# pandas 3 pickles Series/DataFrame under the bare module `pandas` and string columns as
# Arrow arrays; only the constructors needed to rebuild those arrays are admitted.
_PANDAS_IO = {"ExcelFile", "ExcelWriter", "HDFStore"}
_ALLOWED_PYARROW = {"_restore_array", "type_for_alias", "py_buffer"}
_ALLOWED_BUILTINS = {
    "list", "dict", "tuple", "set", "frozenset", "str", "bytes", "bytearray", "int",
    "float", "complex", "bool", "slice", "range", "object", "NoneType", "getattr",
}
_ALLOWED_EXACT = {
    ("collections", "OrderedDict"), ("collections", "defaultdict"), ("datetime", "datetime"),
    ("datetime", "date"), ("datetime", "timedelta"), ("datetime", "timezone"),
    ("copyreg", "_reconstructor"), ("functools", "partial"),
}
_DENIED_NAMES = {"eval", "exec", "system", "popen", "load", "loads", "read_pickle", "__import__"}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        allowed = (
            (module == "builtins" and name in _ALLOWED_BUILTINS)
            or (module == "pandas" and name[:1].isupper() and name not in _PANDAS_IO)
            or (module == "pyarrow.lib" and name in _ALLOWED_PYARROW)
            or (module, name) in _ALLOWED_EXACT
            or (module.startswith(_ALLOWED_MODULE_PREFIXES) and name not in _DENIED_NAMES
                and not module.startswith(("pandas.io", "numpy.testing", "numpy.f2py", "numpy.distutils")))
        )
        if not allowed:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        return super().find_class(module, name)


def safe_load_pickle(path: str | Path):
    """Load a pickle that may only contain pandas/numpy/builtin objects."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise WhyrecError(f"{path} not found") from None
    try:
        return _RestrictedUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as e:
        if "truncated" in str(e):
            raise WhyrecError(f"{path}: pickle data was truncated; the file is incomplete, copy it again") from None
        raise WhyrecError(
            f"{path}: {e}; only pandas/numpy/builtin pickles are accepted (convert it to Parquet or JSON)"
        ) from None
    except (EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError, KeyError) as e:
        raise WhyrecError(f"{path} is not a readable pickle ({type(e).__name__}: {e}); is the file truncated?") from None
