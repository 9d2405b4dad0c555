"""The classify command: ImageNet top-k of photos, and its errors."""
import conftest

from tflite_transfer import cli

# ../shared/README.md: expected top-1 of each shared photo (index in imagenet_labels.txt).
EXPECTED_TOP1 = {"bird.bmp": "20", "cat.bmp": "286", "dragonfly.bmp": "320", "grace_hopper.bmp": "653",
                 "sunflower.bmp": "986"}


def _lines(paths, **kw):
    out = []
    failed = cli.classify(paths, print_fn=out.append, **kw)
    return failed, out


def test_classify_folder_prints_known_top1_for_each_photo():
    failed, out = _lines([str(conftest.IMAGES)], top=1)
    assert failed == 0
    # Output: the file name, then one "score id label" line per class.
    got = {out[i].rsplit("/", 1)[-1]: out[i + 1].split()[1] for i in range(0, len(out), 2)}
    assert got == EXPECTED_TOP1


def test_classify_reports_an_unreadable_image_and_goes_on(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    failed, out = _lines([str(bad), str(conftest.IMAGES / "cat.bmp")], top=2)
    assert failed == 1
    assert out[0].startswith(str(bad)) and "cannot read" in out[0]
    assert out[1].endswith("cat.bmp") and out[2].split()[1] == "286" and len(out) == 4


def test_classify_command_exit_codes(tmp_path, capsys):
    assert cli.main(["classify", str(tmp_path / "missing.jpg")]) == 1
    assert "No such image file or folder" in capsys.readouterr().err
    assert cli.main(["classify", str(tmp_path)]) == 1  # empty folder
    assert "No images" in capsys.readouterr().err
    assert cli.main(["classify", "--top", "0", str(conftest.IMAGES)]) == 2


def test_train_on_a_missing_folder_is_one_line_not_a_traceback(tmp_path, capsys):
    assert cli.main(["train", str(tmp_path / "nope"), "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err and err.count("\n") == 1
