"""Object store transfers: ensign's BlobStore against raw s3fs, on a moto S3 endpoint.

Each measurement runs in its own process, so its peak RSS is its own; the moto server
runs in yet another process.  In one run, for a file of ``--size-mib`` (default 1024):

* raw s3fs ``put_file`` / ``get_file``;
* ensign ``BlobStore.put_file`` (first upload: hashing pass + verified multipart upload),
  ``put_file`` of the unchanged file again (stat cache: no hashing, one HEAD), and
  ``get_file`` (ranged download, digest verified).

Usage::

    .venv/bin/python benchmarks/bench_transfer.py [--size-mib 1024] [--repeat 2]

The moto server is a local Python process: absolute throughput says more about moto than
about S3; the ratios (same server, same file, same run) are what this measures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

MiB = 2**20


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# --- children: one measurement each -------------------------------------------------------


def _child(args: argparse.Namespace) -> dict[str, Any]:
    import s3fs

    from ensign.storage.blobstore import BlobStore
    from ensign.storage.statcache import StatCache

    source = Path(args.file)
    out = Path(args.out)
    result: dict[str, Any] = {}
    if args.child in {"upload-raw", "download-raw"}:
        fs = s3fs.S3FileSystem(endpoint_url=args.endpoint, skip_instance_cache=True)
        remote = f"{args.bucket}/raw-{args.rep}/file.bin"
        fs.ls(args.bucket)  # open the session outside the timing, as the store's has() does
        started = time.perf_counter()
        if args.child == "upload-raw":
            fs.put_file(str(source), remote)
        else:
            fs.get_file(remote, str(out))
        result["seconds"] = time.perf_counter() - started
    else:
        cache = StatCache(args.cache)
        store = BlobStore(f"s3://{args.bucket}/ensign-{args.rep}", stat_cache=cache)
        store.fs.ls(args.bucket)
        started = time.perf_counter()
        if args.child == "upload-ensign":
            blob = store.put_file(source)
            result["uploaded"] = blob.uploaded
            result["digest"] = blob.digest
        elif args.child == "reupload-ensign":
            blob = store.put_file(source)
            result["uploaded"] = blob.uploaded
            result["seconds_first_call"] = time.perf_counter() - started
            started = time.perf_counter()
            store.put_file(source)
        else:
            store.get_file(args.digest, out)
        result["seconds"] = time.perf_counter() - started
        transfer = store._s3
        result["buffer_bound_mib"] = transfer.max_buffered_bytes / MiB
        cache.close()
    result["peak_rss_mib"] = _peak_rss_mib()
    return result


# --- the orchestrating parent -------------------------------------------------------------


def _run_child(name: str, common: list[str], env: dict[str, str], **extra: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", name, *common]
    for key, value in extra.items():
        command += [f"--{key.replace('_', '-')}", value]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _make_file(path: Path, size: int) -> None:
    chunk = os.urandom(8 * MiB)
    with open(path, "wb") as handle:
        left = size
        while left > 0:
            piece = chunk[: min(len(chunk), left)]
            handle.write(piece)
            left -= len(piece)
            chunk = chunk[1:] + chunk[:1]  # no two chunks alike


def _wait_for(endpoint: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("the moto server did not start")
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the moto server did not answer within 60 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="file size (default 1024)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each step (median)")
    parser.add_argument("--dir", default=None, help="scratch folder (default: a temp folder)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    for hidden in ("endpoint", "bucket", "file", "out", "cache", "digest", "rep"):
        parser.add_argument(f"--{hidden}", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args)))
        return

    scratch = Path(args.dir or tempfile.mkdtemp(prefix="ensign-bench-"))
    scratch.mkdir(parents=True, exist_ok=True)
    size = args.size_mib * MiB
    source = scratch / "payload.bin"
    print(f"writing a {args.size_mib} MiB file ...", flush=True)
    _make_file(source, size)

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(endpoint, server)
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket="bench")
        common = ["--endpoint", endpoint, "--bucket", "bench", "--file", str(source)]
        rows: dict[str, list[dict[str, Any]]] = {}
        for rep in range(args.repeat):
            out = scratch / "back.bin"
            cache = scratch / f"statcache-{rep}.sqlite"
            steps = [
                ("upload-raw", {}),
                ("upload-ensign", {"cache": str(cache)}),
                ("reupload-ensign", {"cache": str(cache)}),
                ("download-raw", {"out": str(out)}),
            ]
            for name, extra in steps:
                rows.setdefault(name, []).append(
                    _run_child(name, common, env, rep=str(rep), **extra)
                )
                print(f"  {name:16} run {rep + 1}: {rows[name][-1]}", flush=True)
                out.unlink(missing_ok=True)
            digest = rows["upload-ensign"][-1]["digest"]
            rows.setdefault("download-ensign", []).append(
                _run_child(
                    "download-ensign",
                    common,
                    env,
                    rep=str(rep),
                    out=str(out),
                    cache=str(cache),
                    digest=digest,
                )
            )
            print(f"  {'download-ensign':16} run {rep + 1}: {rows['download-ensign'][-1]}")
            out.unlink(missing_ok=True)
            # Free the server's memory before the next repetition.
            for prefix in (f"raw-{rep}/", f"ensign-{rep}/"):
                listed = client.list_objects_v2(Bucket="bench", Prefix=prefix)
                for item in listed.get("Contents", []):
                    client.delete_object(Bucket="bench", Key=item["Key"])
        client.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
        if args.dir is None:
            shutil.rmtree(scratch, ignore_errors=True)

    def median(name: str, field: str = "seconds") -> float:
        return statistics.median(r[field] for r in rows[name])

    def rate(name: str) -> float:
        return args.size_mib / median(name)

    print()
    print(f"file: {args.size_mib} MiB, {args.repeat} run(s), medians; moto server at {endpoint}")
    print(f"{'step':28}{'seconds':>10}{'MiB/s':>10}{'peak RSS MiB':>15}")
    for name, label in [
        ("upload-raw", "raw s3fs put_file"),
        ("upload-ensign", "ensign put_file (first)"),
        ("download-raw", "raw s3fs get_file"),
        ("download-ensign", "ensign get_file (verified)"),
    ]:
        print(
            f"{label:28}{median(name):>10.2f}{rate(name):>10.1f}"
            f"{median(name, 'peak_rss_mib'):>15.0f}"
        )
    reup = rows["reupload-ensign"]
    assert not any(r["uploaded"] for r in reup), "the unchanged re-upload moved bytes"
    print(
        f"{'ensign put_file (unchanged)':28}"
        f"{median('reupload-ensign', 'seconds_first_call') * 1000:>9.1f}ms (first call in a "
        f"process), {median('reupload-ensign') * 1000:.1f} ms (warm)"
    )
    print()
    print(
        f"upload throughput   ensign / raw s3fs: {rate('upload-ensign') / rate('upload-raw'):.2f}x"
    )
    print(
        f"download throughput ensign / raw s3fs: "
        f"{rate('download-ensign') / rate('download-raw'):.2f}x"
    )
    print(
        f"peak RSS upload     ensign / raw s3fs: "
        f"{median('upload-ensign', 'peak_rss_mib') / median('upload-raw', 'peak_rss_mib'):.2f}x "
        f"(ensign buffers at most {rows['upload-ensign'][0]['buffer_bound_mib']:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
