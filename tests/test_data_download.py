"""``download_dataset`` against a local HTTP server on 127.0.0.1 serving tiny archives in the real formats."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest_data import make_tar_gz, write_fake_cifar, write_fake_svhn

from adaptive_weights.data import DATASET_SOURCES, DownloadError, download_dataset, read_cifar, read_svhn


class _Server:
    """Serves ``files`` (name -> bytes); ``truncate[name] = k`` sends only k bytes under the full length."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.truncate: dict[str, int] = {}
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                name = self.path.rsplit("/", 1)[-1]
                outer.requests.append(name)
                if name not in outer.files:
                    self.send_error(404, "Not Found")
                    return
                body = outer.files[name]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: outer.truncate.get(name, len(body))])
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/data/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server():
    with _Server() as s:
        yield s


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _cifar_archive(tmp_path: Path, name="cifar10", fmt="python", drop=None) -> tuple[bytes, tuple]:
    src = tmp_path / "src"
    expected = write_fake_cifar(src, name, fmt, per_batch=3)
    folder = {"python": {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"},
              "binary": {"cifar10": "cifar-10-batches-bin", "cifar100": "cifar-100-binary"}}[fmt][name]
    return make_tar_gz(src, folder, drop=drop), expected


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_official_sources():
    assert DATASET_SOURCES["cifar10"][0] == "https://www.cs.toronto.edu/~kriz/"
    assert DATASET_SOURCES["cifar10"][1]["python"].md5 == "c58f30108f718f92721af3b95e74349a"
    assert DATASET_SOURCES["svhn"][1]["extra"].filename == "extra_32x32.mat"


@pytest.mark.parametrize(("name", "fmt"), [("cifar10", "python"), ("cifar100", "binary")])
def test_download_extract_and_never_again(tmp_path, server, name, fmt, capsys):
    archive, expected = _cifar_archive(tmp_path, name, fmt)
    filename = DATASET_SOURCES[name][1][fmt].filename
    server.files[filename] = archive
    root = tmp_path / "data"
    folder = download_dataset(name, root, url_base=server.url, fmt=fmt, md5={filename: _md5(archive)})
    assert folder.parent == root and server.requests == [filename]
    for a, b in zip(read_cifar(root, name), expected, strict=True):
        np.testing.assert_array_equal(a, b)
    assert _leftovers(root) == [folder.name]  # archive and temp dirs gone
    assert "100%" in capsys.readouterr().err  # the progress bar ran to the end
    download_dataset(name, root, url_base=server.url, fmt=fmt, md5={filename: _md5(archive)})
    assert server.requests == [filename]  # already there: nothing fetched


def test_wrong_checksum_leaves_nothing(tmp_path, server):
    archive, _ = _cifar_archive(tmp_path)
    server.files["cifar-10-python.tar.gz"] = archive
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match=f"checksum mismatch.*MD5 {_md5(archive)}, expected c58f3010"):
        download_dataset("cifar10", root, url_base=server.url, progress=False)  # the official MD5
    assert _leftovers(root) == []


def test_connection_cut_short_is_an_error(tmp_path, server):
    archive, _ = _cifar_archive(tmp_path)
    server.files["cifar-10-python.tar.gz"] = archive
    server.truncate["cifar-10-python.tar.gz"] = len(archive) // 2
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match="cifar-10-python.tar.gz"):
        download_dataset("cifar10", root, url_base=server.url, progress=False, md5={"cifar-10-python.tar.gz":
                                                                                  _md5(archive)})
    assert _leftovers(root) == []


def test_truncated_archive_with_matching_md5_fails_to_extract(tmp_path, server):
    archive, _ = _cifar_archive(tmp_path)
    cut = archive[: len(archive) * 2 // 3]
    server.files["cifar-10-python.tar.gz"] = cut
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match="could not extract cifar-10-python.tar.gz.*truncated"):
        download_dataset("cifar10", root, url_base=server.url, progress=False,
                         md5={"cifar-10-python.tar.gz": _md5(cut)})
    assert _leftovers(root) == []


def test_archive_missing_a_file_installs_nothing(tmp_path, server):
    archive, _ = _cifar_archive(tmp_path, drop="data_batch_4")
    server.files["cifar-10-python.tar.gz"] = archive
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match="lacks cifar-10-batches-py/data_batch_4"):
        download_dataset("cifar10", root, url_base=server.url, progress=False,
                         md5={"cifar-10-python.tar.gz": _md5(archive)})
    assert _leftovers(root) == []


def test_missing_remote_file_is_a_clear_error(tmp_path, server):
    with pytest.raises(DownloadError, match="cifar-100-python.tar.gz: HTTP 404"):
        download_dataset("cifar100", tmp_path / "data", url_base=server.url, progress=False)
    assert _leftovers(tmp_path / "data") == []
    with pytest.raises(ValueError, match="cannot download 'imagenet'"):
        download_dataset("imagenet", tmp_path, url_base=server.url)


def test_svhn_download_verifies_each_file(tmp_path, server):
    src = tmp_path / "src"
    tx, ty = write_fake_svhn(src, "train", 12, seed=1)
    write_fake_svhn(src, "test", 5, seed=2)
    blobs = {f: (src / f).read_bytes() for f in ("train_32x32.mat", "test_32x32.mat")}
    server.files.update(blobs)
    root = tmp_path / "data"
    md5 = {f: _md5(b) for f, b in blobs.items()}
    # a wrong test-file MD5: train is installed (verified), test is not, and nothing partial remains
    with pytest.raises(DownloadError, match="checksum mismatch.*test_32x32.mat"):
        download_dataset("svhn", root, url_base=server.url, progress=False,
                         md5={**md5, "test_32x32.mat": "0" * 32})
    assert _leftovers(root / "svhn") == ["train_32x32.mat"]
    download_dataset("svhn", root, url_base=server.url, progress=False, md5=md5)
    assert server.requests == ["train_32x32.mat", "test_32x32.mat", "test_32x32.mat"]  # train not refetched
    files = read_svhn(root)
    np.testing.assert_array_equal(files["train"][0], tx)
    np.testing.assert_array_equal(files["train"][1], ty)


def test_build_data_download_flag_fetches_then_reads(tmp_path, server, monkeypatch):
    from adaptive_weights.config import DataConfig
    from adaptive_weights.data import RemoteFile, build_data

    archive, (train_x, _, test_x, _) = _cifar_archive(tmp_path)
    server.files["cifar-10-python.tar.gz"] = archive
    monkeypatch.setitem(DATASET_SOURCES, "cifar10",
                        (server.url, {"python": RemoteFile("cifar-10-python.tar.gz", _md5(archive))}))
    cfg = DataConfig(name="cifar10", root=str(tmp_path / "data"), download=True, val_split=5)
    b = build_data(cfg, batch_size=4, device="cpu", seed=0)
    assert b.train.num_samples == 10 and server.requests == ["cifar-10-python.tar.gz"]
    np.testing.assert_array_equal(b.eval["test"].images.numpy(), test_x)
    np.testing.assert_array_equal(b.eval["val"].images.numpy(), train_x[-5:])


def test_half_folder_left_by_hand_is_replaced(tmp_path, server):
    archive, expected = _cifar_archive(tmp_path)
    server.files["cifar-10-python.tar.gz"] = archive
    root = tmp_path / "data"
    (root / "cifar-10-batches-py").mkdir(parents=True)
    (root / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"junk")  # incomplete: not trusted
    download_dataset("cifar10", root, url_base=server.url, progress=False,
                     md5={"cifar-10-python.tar.gz": _md5(archive)})
    np.testing.assert_array_equal(read_cifar(root, "cifar10")[0], expected[0])
    assert _leftovers(root) == ["cifar-10-batches-py"]
