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

    with pytest.raises(ValueError, match="num_threads"):
        tt.set_num_threads(0)


def test_project_exceptions_are_value_errors():
    assert issubclass(tt.ModelFormatError, ValueError)
    assert issubclass(tt.ImageDecodeError, ValueError)


def test_thread_count_must_be_an_int():
    import pytest

    for bad in ("2", 1.5, True, None):
        with pytest.raises(ValueError, match="`n` must be an int"):
            tt.set_num_threads(bad)
