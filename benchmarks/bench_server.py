"""The REST server: ``ensign server`` next to ``mlflow server``, measured in the same run.

Both servers run on this machine, each as one server process on a SQLite database in a
temporary folder:

* ensign: ``ensign server --tracking-uri DIR/store`` (the embedded folder: SQLite), the
  clients authenticate with the administrator token it prints at its first start;
* MLflow: ``mlflow server --backend-store-uri sqlite:///DIR/mlflow.db --workers 1`` (one
  uvicorn worker), with its background job runner off
  (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``) and its access log off (ensign logs no
  request by default), so that each server is one process doing nothing but the requests.

Two operations, each timed for ``--duration`` seconds with 1 and with 16 concurrent
clients: create a model version (ensign ``ProjectClient.register_model_version(version=
unique name)``, MLflow ``MlflowClient.create_model_version(name, source, run_id=None)`` on one
registered model) and read one (``get_model_version``, cycling over 64 versions created
before the clock starts). Every client is its own process by default (``--clients-as
threads`` puts them in threads of one process), with its own client object, for both peers
alike; each client warms up (its connection, the server's first requests) before any timing.

A figure is operations per second (completed operations ÷ time from the common start until
the last one completes) with the p50 and p99 of the latencies seen by the clients. The peers
alternate phase by phase, and ``--rounds`` repeats the whole set (the figures pool the rounds).
The CPU time the server process and the client processes spent per operation is printed too:
on a machine with few cores, clients and server share the cores, and these show who used them.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing
import multiprocessing.connection
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

TARGET_RATIO = 5.0
TARGET_P99_S = 0.050
TARGET_P99_CLIENTS = 16
PROJECT = "bench-server"
MODEL = "bench-model"
SOURCE = "s3://bench-bucket/model"  # MLflow records the source; nothing reads it
READ_SET = 64
PEERS = ("ensign", "mlflow")
OPERATIONS = ("create", "read")
_TOKEN = re.compile(r"administrator token \(shown once\): (\S+)")
_TICK = os.sysconf("SC_CLK_TCK")


# --- the servers -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bin_script(name: str) -> list[str]:
    script = Path(sys.executable).with_name(name)
    return [str(script)] if script.exists() else [sys.executable, "-m", name]


@dataclass
class Server:
    """A server process group started by this script (its own session: ``pid`` == pgid)."""

    peer: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    token: str = ""

    def pids(self) -> list[int]:
        """Every live process of the server's group (MLflow's launcher and its worker)."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == self.process.pid:  # field 5, the process group
                found.append(int(entry))
        return found

    def cpu_seconds(self) -> float:
        """User + system CPU time of the group's live processes."""
        total = 0
        for pid in self.pids():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / _TICK

    def worker_pid(self) -> int:
        """The process that serves the requests (MLflow's uvicorn child; ensign's only one)."""
        for pid in self.pids():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"-m\x00uvicorn\x00" in cmdline:  # not the launcher, whose options name it
                return pid
        return self.process.pid

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 20)):
            if self.process.poll() is not None and not self.pids():
                return
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            deadline = time.monotonic() + wait
            while self.pids() and time.monotonic() < deadline:
                time.sleep(0.1)
            if not self.pids():
                return


def wait_until_up(server: Server, path: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise SystemExit(
                f"{server.peer} server exited {server.process.returncode}:\n"
                f"{server.log.read_text()[-4000:]}"
            )
        try:
            with urllib.request.urlopen(server.url + path, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise SystemExit(f"{server.peer} server did not start:\n{server.log.read_text()}")
        time.sleep(0.1)


def start(peer: str, command: list[str], log: Path, url: str, env: dict[str, str]) -> Server:
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env},
            start_new_session=True,  # its own process group, stopped as a whole
        )
    return Server(peer, url, process, log)


def start_ensign(work: Path) -> Server:
    port = free_port()
    command = [*bin_script("ensign"), "server", "--port", str(port)]
    command += ["--tracking-uri", str(work / "store")]
    server = start("ensign", command, work / "ensign-server.log", f"http://127.0.0.1:{port}", {})
    wait_until_up(server, "/healthz")
    found = _TOKEN.search(server.log.read_text())
    if found is None:
        server.stop()
        raise SystemExit(f"ensign server printed no administrator token:\n{server.log.read_text()}")
    server.token = found.group(1)
    return server


def start_mlflow(work: Path) -> Server:
    port = free_port()
    command = [*bin_script("mlflow"), "server"]
    command += ["--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}"]
    command += ["--default-artifact-root", str(work / "mlartifacts")]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    command += ["--uvicorn-opts", "--no-access-log"]
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = start("mlflow", command, work / "mlflow-server.log", f"http://127.0.0.1:{port}", env)
    wait_until_up(server, "/health")
    return server


# --- the clients -------------------------------------------------------------------------


def make_operations(peer: str, config: dict[str, Any]) -> dict[str, Callable[[str], Any]]:
    """One client object of ``peer`` and its two operations (each takes a name or key)."""
    if peer == "ensign":
        from ensign.client.project import ProjectClient

        os.environ["ENSIGN_TOKEN"] = config["token"]
        ensign_client = ProjectClient(config["project"], tracking_uri=config["url"])
        return {
            "create": lambda name: ensign_client.register_model_version(version=name),
            "read": lambda name: ensign_client.get_model_version(name),
        }
    from mlflow import MlflowClient

    mlflow_client = MlflowClient(tracking_uri=config["url"])
    model = config["model"]
    return {
        "create": lambda _name: mlflow_client.create_model_version(model, SOURCE, run_id=None),
        "read": lambda version: mlflow_client.get_model_version(model, version),
    }


def key_of(peer: str, created: Any) -> str:
    """What a read names: ensign's version name, MLflow's version number."""
    return str(created.name if peer == "ensign" else created.version)


def client_loop(conn: multiprocessing.connection.Connection, index: int, threaded: bool) -> None:
    """Serve the driver's commands until it sends ``None`` (in a process or a thread)."""
    warnings.filterwarnings("ignore")
    clock = time.thread_time if threaded else time.process_time
    operations: dict[str, dict[str, Callable[[str], Any]]] = {}
    while True:
        command = conn.recv()
        if command is None:
            conn.close()
            return
        kind, peer, config = command[0], command[1], command[2]
        try:
            if peer not in operations:
                operations[peer] = make_operations(peer, config)
            ops = operations[peer]
            if kind == "seed":  # create versions to read; return their keys
                count, prefix = command[3], command[4]
                conn.send([key_of(peer, ops["create"](f"{prefix}{i}")) for i in range(count)])
            elif kind == "warm":
                count, prefix, keys = command[3], command[4], command[5]
                for i in range(count):
                    ops["create"](f"{prefix}{i}")
                    ops["read"](keys[(index + i) % len(keys)])
                conn.send("ok")
            elif kind == "run":
                conn.send(timed(ops, index, clock, *command[3:]))
        except BaseException as error:  # reported by the driver, which stops the run
            conn.send(f"client {index}: {type(error).__name__}: {error}")


def timed(
    ops: dict[str, Callable[[str], Any]],
    index: int,
    clock: Callable[[], float],
    operation: str,
    start_at: float,
    duration: float,
    prefix: str,
    keys: list[str],
) -> dict[str, Any]:
    """Run ``operation`` in a loop from ``start_at`` (monotonic) for ``duration`` seconds."""
    call = ops[operation]
    latencies: list[float] = []
    errors = 0
    first_error = ""
    creating = operation == "create"
    count = len(keys)
    i = index
    while time.monotonic() < start_at:
        time.sleep(0.0005)
    cpu = clock()
    end_at = start_at + duration
    perf = time.perf_counter
    while True:
        began = perf()
        if time.monotonic() >= end_at:
            break
        try:
            call(f"{prefix}{index}-{i}" if creating else keys[i % count])
        except Exception as error:
            errors += 1
            first_error = first_error or f"{type(error).__name__}: {error}"[:300]
        latencies.append(perf() - began)
        i += 1
    return {
        "latencies": latencies,
        "errors": errors,
        "first_error": first_error,
        "cpu": clock() - cpu,
        "done_at": time.monotonic(),
    }


class Clients:
    """``count`` client workers (processes or threads), each serving ``client_loop``."""

    def __init__(self, count: int, threaded: bool) -> None:
        self.conns: list[multiprocessing.connection.Connection] = []
        self.workers: list[Any] = []
        # fork: the workers inherit the imports already made (ensign, mlflow) and start at
        # once; no thread runs in this process yet, so forking is safe.
        context = multiprocessing.get_context("fork")
        for index in range(count):
            ours, theirs = multiprocessing.Pipe()
            worker: Any
            if threaded:
                worker = threading.Thread(target=client_loop, args=(theirs, index, True))
                worker.daemon = True
            else:
                worker = context.Process(target=client_loop, args=(theirs, index, False))
                worker.daemon = True
            worker.start()
            self.conns.append(ours)
            self.workers.append(worker)

    def ask(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send one command to each of the first ``len(commands)`` workers; their answers."""
        for conn, command in zip(self.conns, commands, strict=False):
            conn.send(command)
        answers = [conn.recv() for conn in self.conns[: len(commands)]]
        for answer in answers:
            if isinstance(answer, str) and answer != "ok":
                raise SystemExit(f"a client failed: {answer}")
        return answers

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(BrokenPipeError, OSError):
                conn.send(None)
        for worker in self.workers:
            worker.join(timeout=10)
            if not isinstance(worker, threading.Thread) and worker.is_alive():
                worker.kill()


# --- one phase, and the figures ----------------------------------------------------------


@dataclass
class Figure:
    """What the phases of one peer, operation and client count measured, rounds pooled."""

    ops: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    per_round: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else float("nan")

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]

    def cpu_ms(self, which: str) -> float:
        spent = self.server_cpu if which == "server" else self.client_cpu
        return spent / self.ops * 1000 if self.ops else float("nan")


def run_phase(
    clients: Clients,
    server: Server,
    config: dict[str, Any],
    operation: str,
    count: int,
    duration: float,
    prefix: str,
    keys: list[str],
    figure: Figure,
    profile: Path | None,
) -> None:
    start_at = time.monotonic() + 0.3
    spy = None
    if profile is not None:
        spy = subprocess.Popen(
            [
                *bin_script("py-spy"),
                "record",
                "--pid",
                str(server.worker_pid()),
                "--format",
                "raw",
                "--rate",
                "250",
                "--duration",
                str(math.ceil(duration)),
                "--nonblocking",
                "--gil",
                "-o",
                str(profile / f"{server.peer}-{operation}-{count}-{prefix.strip('-')}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    commands = [("run", server.peer, config, operation, start_at, duration, prefix, keys)] * count
    for conn, command in zip(clients.conns, commands, strict=False):
        conn.send(command)
    while time.monotonic() < start_at:
        time.sleep(0.001)
    cpu = server.cpu_seconds()
    answers = [conn.recv() for conn in clients.conns[:count]]
    cpu = server.cpu_seconds() - cpu
    if spy is not None:
        spy.wait(timeout=duration + 30)
    for answer in answers:
        if isinstance(answer, str):
            raise SystemExit(f"a client failed: {answer}")
    ops = sum(len(a["latencies"]) for a in answers)
    seconds = max(a["done_at"] for a in answers) - start_at
    figure.ops += ops
    figure.seconds += seconds
    figure.per_round.append(ops / seconds)
    figure.errors += sum(a["errors"] for a in answers)
    figure.first_error = figure.first_error or next(
        (a["first_error"] for a in answers if a["first_error"]), ""
    )
    for answer in answers:
        figure.latencies.extend(answer["latencies"])
    figure.server_cpu += cpu
    figure.client_cpu += sum(a["cpu"] for a in answers)


# --- report ------------------------------------------------------------------------------


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def rate(value: float) -> str:
    return "n/a" if value != value else f"{value:,.0f}/s"


def ms(value: float) -> str:
    if value != value:
        return "n/a"
    return f"{value * 1000:.1f}" if value < 0.1 else f"{value * 1000:.0f}"


def report(
    figures: dict[tuple[str, str, int], Figure], counts: list[int], args: argparse.Namespace
) -> tuple[str, bool]:
    rows = [
        [
            "operation",
            "clients",
            "ensign",
            "mlflow",
            "ensign/mlflow",
            "ensign p50 / p99 ms",
            "mlflow p50 / p99 ms",
            f">= {TARGET_RATIO:g}x",
            f"p99 < {TARGET_P99_S * 1000:g} ms",
        ]
    ]
    passed = True
    for operation in OPERATIONS:
        for count in counts:
            ours = figures.get(("ensign", operation, count), Figure())
            theirs = figures.get(("mlflow", operation, count), Figure())
            ratio = ours.rate / theirs.rate if ours.ops and theirs.ops else float("nan")
            ratio_ok = ratio >= TARGET_RATIO
            p99 = ours.percentile(99)
            if count == TARGET_P99_CLIENTS and ours.ops:
                p99_result = "PASS" if p99 < TARGET_P99_S else "FAIL"
                passed = passed and p99 < TARGET_P99_S
            else:
                p99_result = ""
            if ratio == ratio:
                passed = passed and ratio_ok
            rows.append(
                [
                    "create version" if operation == "create" else "read version",
                    str(count),
                    rate(ours.rate),
                    rate(theirs.rate),
                    "n/a" if ratio != ratio else f"{ratio:.2f}x",
                    f"{ms(ours.percentile(50))} / {ms(p99)}",
                    f"{ms(theirs.percentile(50))} / {ms(theirs.percentile(99))}",
                    "n/a" if ratio != ratio else ("PASS" if ratio_ok else "FAIL"),
                    p99_result,
                ]
            )
    lines = [
        table(rows),
        "",
        f"{args.rounds} round(s) of {args.duration:g} s a phase, pooled; clients are "
        f"{args.clients_as}, one client object each; SQLite behind both servers, one server "
        "process each",
        "CPU time per operation (ms), server process / all clients together; latency p90 and "
        "max (ms):",
    ]
    for (peer, operation, count), figure in sorted(figures.items()):
        lines.append(
            f"  {peer:<6} {operation:<6} {count:>2} clients  server {figure.cpu_ms('server'):5.2f}"
            f"  clients {figure.cpu_ms('client'):5.2f}  p90 {ms(figure.percentile(90)):>5}  max "
            f"{ms(max(figure.latencies, default=float('nan'))):>5}  ({figure.ops:,} ops, "
            f"{figure.errors} errors{': ' + figure.first_error if figure.errors else ''})"
        )
    lines.append("every round (operations/s):")
    for (peer, operation, count), figure in sorted(figures.items()):
        lines.append(
            f"  {peer:<6} {operation:<6} {count:>2} clients  "
            + " ".join(f"{v:,.0f}" for v in figure.per_round)
        )
    return "\n".join(lines), passed


def machine(with_mlflow: bool) -> str:
    import ensign

    mlflow_version = "skipped"
    if with_mlflow:
        import mlflow

        mlflow_version = mlflow.__version__
    return (
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.platform()}; "
        f"{os.cpu_count()} CPUs; Python {platform.python_version()}; "
        f"SQLite {sqlite3.sqlite_version}; ensign {ensign.__version__}; mlflow {mlflow_version}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )


# --- main --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds a phase (5)")
    parser.add_argument("--rounds", type=int, default=2, help="repetitions of every phase (2)")
    parser.add_argument(
        "--clients", default="1,16", help="concurrent client counts, comma-separated (1,16)"
    )
    parser.add_argument(
        "--clients-as",
        choices=("processes", "threads"),
        default="processes",
        help="one process per client (default), or threads of one process",
    )
    parser.add_argument(
        "--warm", type=int, default=10, help="creates and reads each client makes first (10)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="about 30 s: one round of 1.5 s phases"
    )
    parser.add_argument("--skip-mlflow", action="store_true", help="measure ensign only")
    parser.add_argument("--skip-ensign", action="store_true", help="measure MLflow only")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="record each server during each phase with py-spy (the thread holding the GIL; "
        "raw stacks into DIR); the sampler takes CPU: do not report those figures",
    )
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary folder goes")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.rounds, args.warm = 1.5, 1, 3
    counts = sorted({int(c) for c in args.clients.split(",") if c.strip()})
    if not counts or counts[0] < 1 or args.duration <= 0 or args.rounds < 1 or args.warm < 1:
        parser.error("--clients, --duration, --rounds and --warm must be positive")
    peers = [p for p in PEERS if not getattr(args, f"skip_{p}")]
    if not peers:
        parser.error("nothing to measure")
    if args.profile is not None:
        if shutil.which("py-spy") is None and not Path(sys.executable).with_name("py-spy").exists():
            parser.error("--profile needs py-spy: .venv/bin/pip install py-spy")
        args.profile.mkdir(parents=True, exist_ok=True)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("MLFLOW_HTTP_POOL_MAXSIZE", str(max(counts)))  # threads share one
    print(machine("mlflow" in peers), flush=True)
    # Imported before the clients fork, so that each starts with them.
    if "ensign" in peers:
        import ensign.client.project  # noqa: F401
    if "mlflow" in peers:
        import mlflow  # noqa: F401
    import logging

    for name in ("mlflow", "alembic", "sqlalchemy", "urllib3"):  # after mlflow sets its own
        logging.getLogger(name).setLevel(logging.ERROR)

    servers: dict[str, Server] = {}
    configs: dict[str, dict[str, Any]] = {}
    figures: dict[tuple[str, str, int], Figure] = {}
    clients: Clients | None = None
    with tempfile.TemporaryDirectory(prefix="ensign-bench-", dir=args.dir) as tmp:
        work = Path(tmp)
        try:
            clients = Clients(max(counts), threaded=args.clients_as == "threads")
            for peer in peers:
                began = time.monotonic()
                print(f"  starting {peer} server", file=sys.stderr, flush=True)
                if peer == "ensign":
                    servers[peer] = start_ensign(work)
                    configs[peer] = {
                        "url": servers[peer].url,
                        "token": servers[peer].token,
                        "project": PROJECT,
                    }
                else:
                    servers[peer] = start_mlflow(work)
                    configs[peer] = {"url": servers[peer].url, "model": MODEL}
                    from mlflow import MlflowClient

                    MlflowClient(tracking_uri=servers[peer].url).create_registered_model(MODEL)
                print(
                    f"  {peer} server up in {time.monotonic() - began:.1f} s; seeding and "
                    "warming up",
                    file=sys.stderr,
                    flush=True,
                )
            keys: dict[str, list[str]] = {}
            for peer in peers:
                keys[peer] = clients.ask([("seed", peer, configs[peer], READ_SET, "read-")])[0]
                clients.ask(
                    [
                        ("warm", peer, configs[peer], args.warm, f"warm-{i}-", keys[peer])
                        for i in range(max(counts))
                    ]
                )
            plan = [(op, count) for count in counts for op in OPERATIONS]
            step = 0
            for n in range(args.rounds):
                for operation, count in plan:
                    order = peers if step % 2 == 0 else peers[::-1]
                    step += 1
                    for peer in order:
                        print(
                            f"  round {n + 1}/{args.rounds}: {peer} {operation}, {count} "
                            f"client{'s' if count > 1 else ''}",
                            file=sys.stderr,
                            flush=True,
                        )
                        run_phase(
                            clients,
                            servers[peer],
                            configs[peer],
                            operation,
                            count,
                            args.duration,
                            f"r{n}-c{count}-",
                            keys[peer],
                            figures.setdefault((peer, operation, count), Figure()),
                            args.profile,
                        )
        finally:
            if clients is not None:
                clients.close()
            for server in servers.values():
                server.stop()
    text, _passed = report(figures, counts, args)
    print(text)
    print(
        f"load average at the end: {os.getloadavg()[0]:.2f} (1 min; this benchmark's own "
        "clients and servers included)"
    )
    if args.profile is not None:
        print(f"py-spy stacks (raw, one file a phase) in {args.profile}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
