"""Downloader against a local HTTP server on 127.0.0.1 serving ../shared/data under the
catalogue's own URL paths, so the real catalogue entries are exercised end to end offline.

The server counts body bytes sent, honours `Range: bytes=N-` (or ignores it, on request) and
can cut a response halfway, which is how resume is tested.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from whyrec.data import download as D
from whyrec.utils import WhyrecError

CATEGORY = "amazon-2014:Musical_Instruments"
CATEGORY_FILE = "amazon-musical-instruments/reviews_Musical_Instruments_5.json.gz"
# What the suite's real-data tests open under `shared_data` (grep tests/ for `shared_data /`);
# written out here, not derived from the catalogue, so a part dropped from `test-data` fails.
TEST_DATA_FILES = {
    *(f"xrec-amazon/{n}" for n in ("tst.pkl", "tst_pred.pkl", "tst_ref.pkl", "para_dict.pickle",
                                   "total_val.csv", "total_tst.csv")),
    CATEGORY_FILE,
    "recalpaca-ml100k/ML100kEvaluationRecAlpaca.json",
    "ml100k-instructions/ml_100k_instruct_data.json",
    "ml100k-instructions/ml_100k.json",
}


class FileServer(ThreadingHTTPServer):
    """Serves `root`; `drop_times` responses are cut after half their body."""

    daemon_threads = True

    def __init__(self, root: Path):
        super().__init__(("127.0.0.1", 0), Handler)
        self.root = root
        self.bytes_sent = 0
        self.ranges_seen: list[str | None] = []
        self.drop_times = 0
        self.honour_range = True
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: FileServer

    def do_GET(self):  # noqa: N802 (the http.server API name)
        path = self.server.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        rng = self.headers.get("Range")
        start = int(rng.removeprefix("bytes=").rstrip("-")) if rng and self.server.honour_range else 0
        body = data[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with self.server.lock:
            self.server.ranges_seen.append(rng)
            drop = self.server.drop_times > 0
            self.server.drop_times -= drop
        if drop:
            body = body[: len(body) // 2]  # then the connection closes short of Content-Length
        with self.server.lock:  # counted before the write: the client may finish reading (and the test
            self.server.bytes_sent += len(body)  # assert) before this thread runs again after it
        self.wfile.write(body)

    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture(scope="module")
def mirror(shared_data: Path, tmp_path_factory) -> Path:
    """A folder laid out like the public hosts' URL paths, linking to the shared files."""
    root = tmp_path_factory.mktemp("mirror")
    pairs = [(f, shared_data / part.folder / f.name) for part in D.SOURCES["test-data"].parts for f in part.files]
    pairs.append((D.resolve(CATEGORY).files[0], shared_data / CATEGORY_FILE))
    for remote, local in pairs:
        target = root / urlsplit(remote.url).path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(local)
    return root


@pytest.fixture
def server(mirror: Path):
    srv = FileServer(mirror)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_named_source_downloads_every_file_with_pinned_checksums(server, shared_data, tmp_path):
    folder = D.download("xrec-amazon", tmp_path, base_url=server.url, progress=False)
    assert folder == tmp_path / "xrec-amazon"
    names = [f.name for f in D.SOURCES["xrec-amazon"].files]
    assert sorted(p.name for p in folder.iterdir()) == sorted([*names, *(n + ".sha256" for n in names)])
    for name in names:
        assert (folder / name).read_bytes() == (shared_data / "xrec-amazon" / name).read_bytes()
    assert server.bytes_sent == sum((shared_data / "xrec-amazon" / n).stat().st_size for n in names)


def test_unpinned_file_records_its_checksum_and_is_served_from_cache_offline(
        server, shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("WHYREC_CACHE", str(tmp_path))
    monkeypatch.setenv(D.BASE_ENV, server.url)
    path = D.download(CATEGORY, progress=False)
    assert path == tmp_path / "downloads" / "amazon-2014-Musical_Instruments" / "reviews_Musical_Instruments_5.json.gz"
    assert path.read_bytes() == (shared_data / CATEGORY_FILE).read_bytes()
    stamp = path.with_name(path.name + ".sha256")
    assert stamp.read_text() == f"{sha(path)}  {path.name}\n"
    monkeypatch.setenv(D.BASE_ENV, closed_port_url())  # any network use would now fail
    assert D.download(CATEGORY, progress=False) == path


def test_recorded_checksum_holds_a_later_download(server, tmp_path):
    path = D.download(CATEGORY, tmp_path, base_url=server.url, progress=False)
    stamp = path.with_name(path.name + ".sha256")
    stamp.write_text("0" * 64 + f"  {path.name}\n")  # as if the host now served different bytes
    path.unlink()
    with pytest.raises(WhyrecError, match="checksum mismatch.*expected sha256 0{64}, observed"):
        D.download(CATEGORY, tmp_path, base_url=server.url, progress=False)
    assert not path.exists() and not path.with_name(path.name + ".part").exists()


def test_dropped_connection_is_resumed_without_refetching(server, shared_data, tmp_path):
    server.drop_times = 1
    size = (shared_data / CATEGORY_FILE).stat().st_size
    path = D.download(CATEGORY, tmp_path, base_url=server.url, progress=False)
    assert sha(path) == sha(shared_data / CATEGORY_FILE)
    assert server.ranges_seen == [None, f"bytes={size // 2}-"]
    assert server.bytes_sent == size


def test_partial_file_survives_a_failed_run_and_the_next_run_resumes(server, shared_data, tmp_path):
    server.drop_times = 10
    size = (shared_data / CATEGORY_FILE).stat().st_size
    with pytest.raises(WhyrecError, match="cannot reach 127.0.0.1.*--path"):
        D.download(CATEGORY, tmp_path, base_url=server.url, progress=False, retries=0)
    part = tmp_path / "amazon-2014-Musical_Instruments" / "reviews_Musical_Instruments_5.json.gz.part"
    assert part.stat().st_size == size // 2
    server.drop_times = 0
    path = D.download(CATEGORY, tmp_path, base_url=server.url, progress=False)
    assert sha(path) == sha(shared_data / CATEGORY_FILE) and not part.exists()
    assert server.bytes_sent == size


def test_server_ignoring_range_restarts_the_file(server, shared_data, tmp_path):
    server.honour_range = False
    part = tmp_path / "amazon-2014-Musical_Instruments" / "reviews_Musical_Instruments_5.json.gz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale bytes from another version")
    path = D.download(CATEGORY, tmp_path, base_url=server.url, progress=False)
    assert path.read_bytes() == (shared_data / CATEGORY_FILE).read_bytes()


def test_checksum_mismatch_deletes_the_download_and_names_both_sums(server, shared_data, tmp_path):
    with pytest.raises(WhyrecError) as err:
        D.download(CATEGORY, tmp_path, sha256="ab" * 32, base_url=server.url, progress=False)
    msg = str(err.value)
    assert "ab" * 32 in msg and sha(shared_data / CATEGORY_FILE) in msg and "\n" not in msg
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_hand_placed_file_is_verified_not_fetched(server, shared_data, tmp_path):
    folder = tmp_path / "xrec-amazon"
    shutil.copytree(shared_data / "xrec-amazon", folder)
    (folder / "tst_ref.pkl").unlink()
    (folder / "tst_ref.pkl").write_bytes(b"not the file")
    with pytest.raises(WhyrecError, match="checksum mismatch.*delete .*tst_ref.pkl and re-run"):
        D.download("xrec-amazon", tmp_path, base_url=server.url, progress=False)
    (folder / "tst_ref.pkl").unlink()
    shutil.copy(shared_data / "xrec-amazon" / "tst_ref.pkl", folder)
    assert D.download("xrec-amazon", tmp_path, base_url=server.url, progress=False) == folder
    assert server.bytes_sent == 0 and (folder / "tst_ref.pkl.sha256").is_file()


def test_missing_file_is_a_404_error(server, tmp_path):
    with pytest.raises(WhyrecError, match=r"HTTP 404 \(not found\).*--path"):
        D.download("amazon-2018:No_Such_Category", tmp_path, base_url=server.url, progress=False)
    with pytest.raises(WhyrecError, match="HTTP 404"):
        D.download(f"{server.url}/missing.bin", tmp_path, progress=False)


def test_unreachable_host_says_how_to_proceed(tmp_path):
    with pytest.raises(WhyrecError, match=r"cannot reach 127\.0\.0\.1:\d+ .*download it by hand and pass --path"):
        D.download("ml-100k", tmp_path, base_url=closed_port_url(), progress=False, retries=0)


def test_catalogue_entries_resolve_to_public_urls():
    hosts = {"raw.githubusercontent.com", "files.grouplens.org", "snap.stanford.edu", "jmcauley.ucsd.edu"}
    rows = D.list_sources()
    assert {"xrec-amazon", "xrec-google", "xrec-yelp", "ml-100k", "ml-1m"} <= {r["name"] for r in rows}
    for name in D.SOURCES:
        for f in D.resolve(name).files:
            assert urlsplit(f.url).netloc in hosts and f.url.startswith(("http://", "https://"))
    assert D.resolve("ml-1m").files[0].url == "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
    assert all(f.sha256 for f in D.SOURCES["xrec-amazon"].files)
    assert D.resolve("amazon-2018:Beauty").files[0].url.endswith("/categoryFilesSmall/Beauty_5.json.gz")
    assert D.resolve(CATEGORY).files[0].url.endswith("/categoryFiles/reviews_Musical_Instruments_5.json.gz")
    with pytest.raises(WhyrecError, match="known: xrec-amazon"):
        D.resolve("movielens")
    with pytest.raises(WhyrecError, match="amazon-2014:Musical_Instruments"):
        D.resolve("amazon-2014:")


def test_rebase_keeps_the_path_and_a_mirror_prefix():
    url = "https://raw.githubusercontent.com/HKUDS/XRec/79e2cd4/data/amazon/tst.pkl"
    assert D.rebase(url, "http://127.0.0.1:9/mirror/") == "http://127.0.0.1:9/mirror/HKUDS/XRec/79e2cd4/data/amazon/tst.pkl"
    assert D.rebase(url, None) == url


def test_zip_is_extracted_once_and_zip_slip_is_refused(tmp_path):
    import zipfile

    archive = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("ml-100k/u.data", "196\t242\t3\t881250949\n")
        z.writestr("ml-100k/README", "MovieLens")
    folder = D.extract_zip(archive)
    assert folder == tmp_path / "ml-100k" and (folder / "u.data").read_text().startswith("196\t242")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left behind
    (folder / "README").unlink()
    assert D.extract_zip(archive) == folder and not (folder / "README").exists()  # not unpacked twice
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../escaped.txt", "x")
    with pytest.raises(WhyrecError, match="would unpack outside the folder"):
        D.extract_zip(evil)
    assert not (tmp_path.parent / "escaped.txt").exists() and not (tmp_path / "evil").exists()
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(WhyrecError, match="not a valid zip archive"):
        D.extract_zip(tmp_path / "bad.zip")


def test_download_extract_flag_through_the_local_server(server, mirror, tmp_path):
    import zipfile

    (mirror / "files").mkdir(exist_ok=True)
    with zipfile.ZipFile(mirror / "files" / "ml-test.zip", "w") as z:
        z.writestr("ml-test/u.item", "1|Toy Story (1995)\n")
    url = f"{server.url}/files/ml-test.zip"
    folder = D.download(url, tmp_path, progress=False, extract=True)
    assert folder == tmp_path / "ml-test" and (folder / "u.item").exists()


def test_test_data_rebuilds_the_shared_layout_through_a_mirror(server, shared_data, tmp_path, capsys):
    from whyrec.cli import main

    out = tmp_path / "data"
    args = ["data", "download", "--name", "test-data", "--out", str(out), "--progress", "false"]
    assert main([*args, "--base_url", server.url]) == 0
    assert f'"path": "{out}"' in capsys.readouterr().out
    got = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.suffix != ".sha256"}
    assert got == TEST_DATA_FILES
    for rel in TEST_DATA_FILES:
        assert (out / rel).read_bytes() == (shared_data / rel).read_bytes(), rel
    assert server.bytes_sent == sum((shared_data / rel).stat().st_size for rel in TEST_DATA_FILES)
    # verified files are kept: a second run must not touch the network at all
    assert main([*args, "--base_url", closed_port_url()]) == 0
    assert D.download("test-data", out, base_url=closed_port_url(), progress=False) == out


def test_test_data_pins_are_the_shared_files_checksums(shared_data, tmp_path):
    bundle = D.SOURCES["test-data"]
    assert {p.name for p in bundle.parts} == {rel.split("/")[0] for rel in TEST_DATA_FILES}
    rows = {r["name"]: r for r in D.list_sources()}
    assert rows["test-data"]["parts"] == [p.name for p in bundle.parts]
    for part in bundle.parts:
        assert part.terms and rows[part.name]["terms"] == part.terms
        for f in part.files:
            local = shared_data / part.folder / f.name
            assert (f.sha256, f.size) == (sha(local), local.stat().st_size), f.url
    with pytest.raises(WhyrecError, match="test-data has 10 files; --sha256 applies to one-file sources"):
        D.download("test-data", tmp_path, sha256="ab" * 32)
