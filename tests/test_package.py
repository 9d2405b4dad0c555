"""The package imports and its C core reports the oneDNN it was built against."""
import tflite_transfer as tt


def test_onednn_is_v3():
    major, minor, patch, _ = tt._core.onednn_version()
    assert (major, minor) >= (3, 2)


def test_thread_count_is_settable_and_validated():
    n = tt.get_num_threads()
    tt.set_num_threads(1)
    assert tt.get_num_threads() == 1
    tt.set_num_threads(n)
    import pytest

    # one wording for both checks (Python: the type; C: the range), as a new user asked
    for bad in (0, -2, 4097, 2**63, 2**64):  # 2**63: beyond C's long, still a ValueError naming n
        with pytest.raises(ValueError, match=rf"`n` must be an int in \[1, 4096\]. Received: n={bad}"):
            tt.set_num_threads(bad)


def test_project_exceptions_are_value_errors():
    assert issubclass(tt.ModelFormatError, ValueError)
    assert issubclass(tt.ImageDecodeError, ValueError)


def test_thread_count_must_be_an_int():
    import pytest

    for bad in ("2", 1.5, True, None):
        with pytest.raises(ValueError, match="`n` must be an int"):
            tt.set_num_threads(bad)


def test_requires_python_covers_the_c_api_the_extension_calls():
    """Issue 9 (found by reading): pyproject declared Python >= 3.9 while csrc/ calls 3.10 / 3.11
    C API functions; an install on 3.9 / 3.10 failed to compile. The table lists the version
    that introduced each function (docs.python.org, "Added in version")."""
    import pathlib
    import re
    import tomllib

    root = pathlib.Path(__file__).resolve().parent.parent
    added = {"PyType_GetModuleByDef": (3, 11), "PyModule_AddObjectRef": (3, 10), "Py_NewRef": (3, 10),
             "Py_XNewRef": (3, 10), "Py_IsNone": (3, 10), "PyModule_AddType": (3, 9),
             "PyType_FromModuleAndSpec": (3, 9), "PyType_GetModule": (3, 9), "PyType_GetModuleState": (3, 9),
             "PyErr_GetRaisedException": (3, 12), "PyLong_AsInt": (3, 13), "PyDict_GetItemRef": (3, 13),
             "PyModule_Add": (3, 13), "PyImport_ImportModuleAttr": (3, 14)}
    source = "\n".join(p.read_text() for p in sorted((root / "csrc").rglob("*.[ch]")))
    used = {name: v for name, v in added.items() if re.search(rf"\b{name}\s*\(", source)}
    needed = max(used.values())
    spec = tomllib.loads((root / "pyproject.toml").read_text())["project"]["requires-python"]
    declared = tuple(int(v) for v in re.fullmatch(r">=\s*(\d+)\.(\d+)", spec.strip()).groups())
    assert used and declared >= needed, (spec, used)
