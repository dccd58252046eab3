"""DPSANDBOX_SPARK_MASTER beyond local mode, against real clusters started here from
pyspark's own jars (each process in its own session, killed with it): a Spark Connect
server (``sc://``: the engine as a thin client) and a standalone master with one worker
(``spark://``: executors in a JVM of their own, which need no Python). Each answers a
query with the same charge and accuracy as local mode, and refuses what it cannot bound."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pyspark
import pytest

from gateway.adapters.spark import SparkSessions
from gateway.adapters.spark.engine import SparkEngine
from gateway.domain.budget import Budget
from gateway.domain.errors import UnsupportedQuery
from gateway.domain.query import Aggregate, QuerySpec
from tests.unit.test_engine import make_frame, make_policy

SPARK_HOME = Path(pyspark.__file__).parent
SERVER = "org.apache.spark.sql.connect.service.SparkConnectServer"
MASTER = "org.apache.spark.deploy.master.Master"
WORKER = "org.apache.spark.deploy.worker.Worker"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(args: list[str], log: Path, ready: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        process = subprocess.Popen(args, env={**os.environ, "SPARK_HOME": str(SPARK_HOME)},
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while ready not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            _stop(process)
            pytest.fail(f"{args[1]} did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.5)
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="module", params=["connect", "standalone"])
def master_url(request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    logs, port = tmp_path_factory.mktemp("cluster"), _free_port()
    processes = []
    try:
        if request.param == "connect":
            processes.append(_start(
                [str(SPARK_HOME / "bin" / "spark-submit"), "--class", SERVER, "--master",
                 "local[1]", "--driver-memory", "512m", "--conf",
                 f"spark.connect.grpc.binding.port={port}", "--conf", "spark.ui.enabled=false",
                 "spark-internal"], logs / "connect.log", "Spark Connect server started"))
            yield f"sc://127.0.0.1:{port}"
            return
        master = f"spark://127.0.0.1:{port}"
        processes.append(_start(
            [str(SPARK_HOME / "bin" / "spark-class"), MASTER, "--host", "127.0.0.1", "--port",
             str(port), "--webui-port", str(_free_port())], logs / "master.log",
            "I have been elected leader"))
        processes.append(_start(
            [str(SPARK_HOME / "bin" / "spark-class"), WORKER, "--cores", "1", "--memory", "1g",
             "--webui-port", str(_free_port()), master], logs / "worker.log",
            "Successfully registered with master"))
        yield master
    finally:
        for process in reversed(processes):
            _stop(process)


def test_a_cluster_answers_like_local_mode(master_url: str, tmp_path: Path) -> None:
    directory = tmp_path / "flights"
    directory.mkdir()
    make_frame().write_parquet(directory / "part-0.parquet")
    truth = dict(make_frame().group_by("region").len().iter_rows())
    sessions = SparkSessions(master_url, {"spark.executor.memory": "512m"})
    try:
        engine = SparkEngine(sessions)
        query = QuerySpec(dataset="flights", select=(Aggregate("count"), Aggregate("mean", "delay")),
                          group_by=("region",))
        plan = engine.plan(query, make_policy(), parquet=str(directory), version="v",
                           loss=Budget.query_loss(1.0))
        assert plan.spent[0] == pytest.approx(1.0, rel=1e-6)
        release = plan.release(alpha=1e-9)
        assert [row[0] for row in release.rows] == ["north", "south", "east", "west"]
        for region, count, _mean in release.rows:
            assert abs(count - truth.get(region, 0)) <= release.accuracy["count"]
        with pytest.raises(UnsupportedQuery):
            engine.plan(QuerySpec(dataset="flights", select=(Aggregate("quantile", "dist", q=0.5),)),
                        make_policy(), parquet=str(directory), version="v",
                        loss=Budget.query_loss(1.0))
    finally:
        sessions.stop()
