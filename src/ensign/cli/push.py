"""``ensign push``: send a bundle to a server and wait for its goals.

``ensign push DIR`` does what the openlayer SDK's ``push`` does, through the REST client's
session (its token, retries and idempotency keys, and the server's errors as ensign's): tar
the folder to a temporary file, ask the server where to upload it, stream the upload as
multipart form data (``fields`` first, ``file`` last) with a byte progress bar, commit the
version and, with ``--wait``, poll it until it is ``completed`` or ``failed`` and print
each goal.  It exits non-zero when the push failed or a goal does not pass.
"""

from __future__ import annotations

import re
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import quote

import click

from ensign.cli.errors import CliError
from ensign.cli.options import project_option, tracking_uri_option
from ensign.cli.output import byte_progress, print_json
from ensign.config import resolve_project, resolve_tracking_uri
from ensign.registry.rest.session import RestSession
from ensign.storage.hashing import Progress

__all__ = ["push"]

_CONFIG = "openlayer.json"
_POLL_SECONDS = 0.5
_SYMBOL = {"passing": "PASS", "failing": "FAIL", "error": "ERROR"}


def _one_line(text: object) -> str:
    return re.sub(r"\s+", " ", str(text)).strip()


class MultipartBody:
    """A multipart/form-data body read in chunks: ``fields`` first, then the file.

    It has a length, so ``requests`` sends a ``Content-Length`` (S3's POST needs one) and
    streams the file from disk instead of reading it into memory.

    Args:
        fields: Form fields sent before the file.
        file_path: The file, sent last as the part named ``file``.
        file_name: The file name the part declares.
        boundary: The multipart boundary (the ``Content-Type`` header names it).
        progress: Called with the number of file bytes sent.
    """

    def __init__(
        self,
        fields: dict[str, str],
        file_path: Path,
        file_name: str,
        boundary: str,
        progress: Progress | None = None,
    ) -> None:
        self.boundary = boundary
        head = b"".join(
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'.encode()
            + str(value).encode()
            + b"\r\n"
            for key, value in fields.items()
        )
        head += (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{file_name}"\r\nContent-Type: application/x-tar\r\n\r\n'
        ).encode()
        self._head = head
        self._tail = f"\r\n--{self.boundary}--\r\n".encode()
        self._path = file_path
        self._size = file_path.stat().st_size
        self._progress = progress
        self._chunks = self._iterate()
        self._buffer = b""

    @property
    def content_type(self) -> str:
        """The ``Content-Type`` header naming the boundary."""
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return len(self._head) + self._size + len(self._tail)

    def _iterate(self) -> Iterator[bytes]:
        yield self._head
        with open(self._path, "rb") as handle:
            while chunk := handle.read(1024 * 1024):
                if self._progress is not None:
                    self._progress(len(chunk))
                yield chunk
        yield self._tail

    def read(self, size: int = -1) -> bytes:
        """Return up to ``size`` bytes of the body (all that is left when negative)."""
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


def _server_url(tracking_uri: str | None) -> str:
    uri = resolve_tracking_uri(tracking_uri)
    if not uri.startswith(("http://", "https://")):
        raise CliError(
            f"ensign push needs a server: pass --tracking-uri http://HOST:PORT (or set "
            f"ENSIGN_TRACKING_URI), not {uri!r}"
        )
    return uri


def _check_folder(folder: Path) -> None:
    if not folder.exists():
        raise CliError(f"no such folder: {folder}")
    if not folder.is_dir():
        raise CliError(f"{folder} is not a folder: push a bundle folder holding {_CONFIG}")
    if not (folder / _CONFIG).is_file():
        raise CliError(f"{folder} has no {_CONFIG}: it is not a bundle")


def _tar(folder: Path, target: Path) -> None:
    with tarfile.open(target, "w") as tar:
        tar.add(folder, arcname=folder.resolve().name)


def _upload(api: RestSession, archive: Path) -> str:
    target = api.call("POST", "/v1/storage/presigned-url", params={"objectName": archive.name})
    fields = dict(target.get("fields") or {})
    size = archive.stat().st_size
    boundary = f"ensign-{uuid.uuid4().hex}"
    with byte_progress(f"uploading {archive.name}", size) as progress:

        def body() -> IO[bytes]:  # a fresh body for each try
            return cast(IO[bytes], MultipartBody(fields, archive, archive.name, boundary, progress))

        # The URL is presigned: it carries its own authority, never the bearer token.
        response = api.send(
            "POST",
            target["url"],
            body=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
            authorized=False,
        )
    # 409: an earlier try of this very upload landed, and only its answer was lost.
    if response.status_code >= 400 and response.status_code != 409:
        raise CliError(
            f"the upload was refused ({response.status_code}): {_one_line(response.text[:500])}"
        )
    return str(target["storageUri"])


def _wait(api: RestSession, version_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        version: dict[str, Any] = api.call("GET", f"/v1/versions/{version_id}")
        if version["status"] in ("completed", "failed"):
            return version
        if time.monotonic() > deadline:
            raise CliError(
                f"version {version_id} is still {version['status']} after {timeout:g} seconds"
            )
        time.sleep(_POLL_SECONDS)


def _describe(item: dict[str, Any]) -> str:
    value = item.get("measuredValue")
    measured = "-" if value is None else f"{value:.6g}"
    expected = ""
    thresholds = (item.get("goal") or {}).get("thresholds") or []
    if thresholds:
        first = thresholds[0]
        expected = f"{first.get('measurement')} {first.get('operator')} {first.get('value')}: "
    where = f" on {item['dataset']}" if item.get("dataset") else ""
    return f"{expected}{measured}{where}"


def _report(api: RestSession, version: dict[str, Any]) -> None:
    results = api.call("GET", f"/v1/versions/{version['id']}/results")["items"]
    click.echo(
        f"version {version['id']} {version['status']}: {_one_line(version['statusMessage'])}"
    )
    click.echo(
        f"passing {version['passingGoalCount']}  failing {version['failingGoalCount']}  "
        f"total {version['totalGoalCount']}"
    )
    for item in results:
        symbol = _SYMBOL.get(str(item.get("status")), str(item.get("status")).upper())
        click.echo(f"{symbol:<5} {item['goal']['name']}  {_describe(item)}")
    extras = version.get("ensign") or {}
    if extras.get("version"):
        line = f"{extras.get('kind', 'artifact')} version {extras['version']}"
        promotion = extras.get("promotion")
        if promotion is not None:
            verdict = "promoted to" if promotion.get("promoted") else "not promoted to"
            stage = extras.get("stage") or "testing"
            line += f": {verdict} {stage} ({'; '.join(promotion.get('reasons') or [])})"
        click.echo(line)


@click.command("push")
@click.argument("folder", type=click.Path(path_type=Path))
@project_option
@click.option("-m", "--message", default="New commit", show_default=True, help="Commit message.")
@click.option("--wait", is_flag=True, help="Wait for the goals; exit non-zero when one fails.")
@click.option(
    "--when",
    default=None,
    metavar="COND",
    help="Promote when this holds, e.g. 'goals_all_passing == 1'.",
)
@click.option(
    "--stage",
    default=None,
    metavar="STAGE",
    help="The stage the version goes to when --when holds (or always, without --when).",
)
@click.option(
    "--kind",
    type=click.Choice(["artifact", "model"]),
    default="artifact",
    show_default=True,
    help="The kind of version the bundle becomes.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=3600.0,
    show_default=True,
    help="Seconds --wait waits.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the version as JSON.")
@tracking_uri_option
def push(
    folder: Path,
    project: str | None,
    message: str,
    wait: bool,
    when: str | None,
    stage: str | None,
    kind: str,
    timeout: float,
    as_json: bool,
    tracking_uri: str | None,
) -> None:
    """Push a bundle FOLDER (holding openlayer.json) to a server and evaluate its goals."""
    _check_folder(folder)
    api = RestSession(_server_url(tracking_uri))
    try:
        project_key = resolve_project(project)
        with tempfile.TemporaryDirectory(prefix="ensign-push-") as tmp:
            archive = Path(tmp) / "bundle.tar"
            _tar(folder, archive)
            storage_uri = _upload(api, archive)
        body: dict[str, Any] = {"commit": {"message": message}, "storageUri": storage_uri}
        if when is not None or stage is not None or kind != "artifact":
            body["ensign"] = {"when": when, "stage": stage, "kind": kind}
        version = api.call(
            "POST", f"/v1/projects/{quote(project_key, safe='/')}/versions", payload=body
        )
        if not wait:
            if as_json:
                print_json(version)
            else:
                click.echo(f"version {version['id']} {version['status']}")
            return
        version = _wait(api, version["id"], timeout)
        if as_json:
            print_json(version)
        else:
            _report(api, version)
        if version["status"] == "failed":
            raise CliError(f"version {version['id']} failed: {_one_line(version['statusMessage'])}")
        if version["failingGoalCount"]:
            raise CliError(
                f"{version['failingGoalCount']} of {version['totalGoalCount']} goals not passing"
            )
    finally:
        api.close()
