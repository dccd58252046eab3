"""DPSANDBOX_SPARK_MASTER=sc://...: the Spark engine as a thin client of a real Spark Connect
server (started here from pyspark's own jars, local[1], as its own process), answering a
query with the same charge and accuracy as in local mode."""

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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def connect_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    log = tmp_path_factory.mktemp("connect") / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(SPARK_HOME / "bin" / "spark-submit"), "--class", SERVER, "--master", "local[1]",
             "--driver-memory", "512m", "--conf", f"spark.connect.grpc.binding.port={port}",
             "--conf", "spark.ui.enabled=false", "spark-internal"],
            env={**os.environ, "SPARK_HOME": str(SPARK_HOME)}, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while "Spark Connect server started" not in log.read_text(errors="replace"):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Spark Connect server did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield f"sc://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def test_a_spark_connect_server_answers_like_local_mode(connect_url: str, tmp_path: Path) -> None:
    directory = tmp_path / "flights"
    directory.mkdir()
    make_frame().write_parquet(directory / "part-0.parquet")
    truth = dict(make_frame().group_by("region").len().iter_rows())
    sessions = SparkSessions(connect_url)
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
