"""The real dataset archives: find them, verify their published MD5, download them when allowed.

Every failure is a ``DataError`` in one paragraph naming the file, where it belongs, its checksum and
its source, so a user without network (or past CelebA's Google Drive quota) knows what to fetch.
``PIPELINE_TEST_CHECKSUMS`` (a JSON file {file name: md5}) overrides the published checksums; it
exists for the tests, which write small archives in the real formats.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from pipeline.data import DataError

log = logging.getLogger("pipeline")
TEST_CHECKSUMS_ENV = "PIPELINE_TEST_CHECKSUMS"
DOWNLOAD_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Archive:
    """One published file: its name, MD5 (from torchvision's dataset classes) and source."""

    name: str
    md5: str
    url: str = ""
    drive_id: str = ""  # Google Drive file id (CelebA), downloaded with torchvision's Drive helper

    @property
    def source(self) -> str:
        return self.url or f"https://drive.google.com/uc?id={self.drive_id}"


def expected_md5(archive: Archive) -> str:
    """The published MD5, or the test override from ``PIPELINE_TEST_CHECKSUMS``."""
    override = os.environ.get(TEST_CHECKSUMS_ENV)
    if override:
        try:
            table = json.loads(Path(override).read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"{TEST_CHECKSUMS_ENV}={override} is not a readable JSON file {{name: md5}} ({exc}); "
                            f"unset it (it is for tests only).") from exc
        if archive.name in table:
            log.warning("checksum of %s taken from %s (%s): for tests only", archive.name, TEST_CHECKSUMS_ENV, override)
            return table[archive.name]
    return archive.md5


def show_progress() -> bool:
    """Whether long loops show a tqdm bar: yes unless the environment sets ``PIPELINE_PROGRESS=0``."""
    return os.environ.get("PIPELINE_PROGRESS", "1") != "0"


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    """MD5 of a file, read in chunks (archives are up to 1.4 GB)."""
    digest = hashlib.md5(usedforsecurity=False)  # an integrity check: keeps working on FIPS systems
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def socket_timeout(seconds: float) -> Iterator[None]:
    """Bound every socket operation inside: downloaders that call urlopen without a timeout would hang on a
    dead host; the process default is what bounds them."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def _download(archive: Archive, raw_dir: Path) -> None:
    """Download into a temporary name in ``raw_dir``; rename only once the checksum matches."""
    from torchvision.datasets.utils import download_file_from_google_drive, download_url

    # Not created in advance: torchvision skips the download when the target exists and no MD5 is given. The pid
    # keeps two concurrent prepares apart; a leftover from a killed run is never mistaken for the archive.
    tmp_name = f".{archive.name}.{os.getpid()}.part"
    tmp = raw_dir / tmp_name
    tmp.unlink(missing_ok=True)
    try:
        with socket_timeout(DOWNLOAD_TIMEOUT_S):
            if archive.drive_id:
                download_file_from_google_drive(archive.drive_id, str(raw_dir), tmp_name)
            else:
                download_url(archive.url, str(raw_dir), tmp_name)
        if not tmp.is_file():
            raise OSError("the download produced no file")
        actual = md5sum(tmp)
        if actual != expected_md5(archive):
            raise OSError(f"downloaded file has MD5 {actual} (Google Drive serves an HTML page when over quota)")
        os.replace(tmp, raw_dir / archive.name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def locate(archive: Archive, raw_dir: str | os.PathLike, download: bool) -> Path:
    """Path of a verified archive in ``raw_dir``, downloading it first when absent and ``download``."""
    raw_dir = Path(raw_dir).resolve()
    path = raw_dir / archive.name
    md5 = expected_md5(archive)
    if not path.is_file():
        failure = "downloading is off (prepare.download: false)"
        if download:
            raw_dir.mkdir(parents=True, exist_ok=True)
            try:
                log.info("downloading %s from %s", archive.name, archive.source)
                _download(archive, raw_dir)
            except Exception as exc:  # network, HTTP, quota, checksum: all mean "fetch it by hand"
                failure = f"the download failed ({type(exc).__name__}: {str(exc)[:200]})"
        if not path.is_file():
            raise DataError(
                f"{archive.name} is missing and {failure}. Download it from {archive.source} and put it in "
                f"{raw_dir}/ (expected MD5 {md5}), or set prepare.raw_dir in params.yaml to the directory that "
                f"holds it; then rerun the prepare stage.")
    actual = md5sum(path)
    if actual != md5:
        raise DataError(
            f"{path} is corrupt or truncated: MD5 {actual}, expected {md5} (published checksum). Delete it and "
            f"download it again from {archive.source}.")
    return path
