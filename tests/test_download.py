"""The download path of utils.get_file (keras.utils.get_file's contract) against a local HTTP
server on 127.0.0.1: fetch into the cache, SHA-256 check, atomic rename, cache reuse."""
import hashlib
import http.server
import os
import threading

import numpy as np
import pytest

from conftest import PTQ_MODEL
from tflite_transfer import applications, utils
from tflite_transfer.applications import mobilenet_v2 as mv

PAYLOAD = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()  # ~5 chunks of 64 KiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Server:
    """Serves PAYLOAD at /payload.bin and files of `folder` by name; counts requests; can hold a
    response after its first half until `release` is set (to look at the cache mid-download)."""

    def __init__(self, folder=None):
        self.requests, self.hold, self.release, self.halfway = [], False, threading.Event(), threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                name = self.path.lstrip("/")
                if name == "payload.bin":
                    body = PAYLOAD
                elif folder is not None and os.path.isfile(os.path.join(folder, name)):
                    with open(os.path.join(folder, name), "rb") as f:
                        body = f.read()
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.hold:
                    self.wfile.write(body[:len(body) // 2])
                    self.wfile.flush()
                    server.halfway.set()
                    server.release.wait(30)
                    self.wfile.write(body[len(body) // 2:])
                else:
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    monkeypatch.delenv("TFLITE_TRANSFER_MIRROR", raising=False)  # no local copy: really download
    s = _Server(folder=str(PTQ_MODEL.parent))
    yield s
    s.close()


def test_download_fetches_into_the_cache_checks_sha256_and_reuses_it(server, tmp_path):
    path = utils.get_file("payload.bin", server.url + "/payload.bin", file_hash=SHA, cache_dir_=str(tmp_path),
                          progress=False)
    assert path == str(tmp_path / "models" / "payload.bin")
    with open(path, "rb") as f:
        assert f.read() == PAYLOAD
    assert os.listdir(tmp_path / "models") == ["payload.bin"]  # no .part file left
    assert server.requests == ["/payload.bin"]
    # a second call finds it in the cache (hash checked again), no request
    assert utils.get_file("payload.bin", server.url + "/payload.bin", file_hash=SHA.upper(),
                          cache_dir_=str(tmp_path), progress=False) == path
    assert server.requests == ["/payload.bin"]


def test_download_with_a_wrong_sha256_raises_and_leaves_nothing(server, tmp_path):
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(ValueError, match=f"SHA-256 is {SHA}, expected {wrong}"):
        utils.get_file("payload.bin", server.url + "/payload.bin", file_hash=wrong, cache_dir_=str(tmp_path),
                       progress=False)
    assert os.listdir(tmp_path / "models") == []


def test_download_is_written_to_a_part_file_and_renamed_when_complete(server, tmp_path):
    server.hold = True
    result = {}

    def fetch():
        try:
            result["path"] = utils.get_file("payload.bin", server.url + "/payload.bin", file_hash=SHA,
                                            cache_dir_=str(tmp_path), progress=False)
        except BaseException as e:  # reported below
            result["error"] = e

    t = threading.Thread(target=fetch)
    t.start()
    assert server.halfway.wait(30)
    # mid-download: the final name does not exist yet, a single .part file holds the bytes
    names = os.listdir(tmp_path / "models")
    assert "payload.bin" not in names
    assert len(names) == 1 and names[0].startswith("payload.bin.") and names[0].endswith(".part"), names
    server.release.set()
    t.join(30)
    assert "error" not in result, result.get("error")
    assert os.listdir(tmp_path / "models") == ["payload.bin"]
    with open(result["path"], "rb") as f:
        assert f.read() == PAYLOAD


def test_mobilenet_v2_weights_download_from_their_origin(server, tmp_path, monkeypatch):
    """The registry's real entry (file name, size, SHA-256) with the origin pointed at the local
    server, which serves the shared copy of the file: MobileNetV2 downloads, verifies and loads it."""
    monkeypatch.setenv("TFLITE_TRANSFER_HOME", str(tmp_path))
    name = mv.DEFAULT_IMAGENET_MODEL
    entry = dict(mv.WEIGHTS_REGISTRY[name], origin=f"{server.url}/{name}")
    monkeypatch.setitem(mv.WEIGHTS_REGISTRY, name, entry)
    base = applications.MobileNetV2(input_shape=(96, 96, 3), include_top=False, weights="imagenet")
    assert server.requests == [f"/{name}"]
    cached = tmp_path / "models" / name
    assert cached.is_file() and utils.sha256_of(cached) == utils.sha256_of(PTQ_MODEL)
    assert base.predict(np.zeros((1, 96, 96, 3), np.uint8), verbose=0).shape == (1, 3, 3, 1280)
