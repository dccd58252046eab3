"""One SparkSession per gateway process: created on first use, stopped at shutdown.

``DPSANDBOX_SPARK_MASTER`` (``Settings.spark_master``) selects the cluster: ``local[*]``
(the default: Spark inside the gateway's JVM child, on this machine), a standalone or YARN
master URL (``spark://host:7077``, ``yarn``), or a Spark Connect server (``sc://host:15002``).
The gateway's driver keeps modest memory: it only ever collects aggregates.
"""

from __future__ import annotations

import atexit
import logging
import os
import tempfile
import threading
from typing import Any

log = logging.getLogger(__name__)

APP_NAME = "dp-sandbox gateway"
# the driver collects one row per key cell, never raw rows
DRIVER_CONFIG = {
    "spark.driver.memory": "1g",
    "spark.driver.maxResultSize": "512m",
    "spark.sql.shuffle.partitions": "16",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    # never the working directory (Spark's default): the gateway writes no tables, but
    # Spark creates the directory when its catalog is first used; bootstrap puts it under
    # DPSANDBOX_HOME
    "spark.sql.warehouse.dir": os.path.join(tempfile.gettempdir(), "dpsandbox-spark-warehouse"),
}


class SparkSessions:
    """The process's SparkSession for one master URL, created lazily under a lock."""

    def __init__(self, master: str = "local[*]", config: dict[str, str] | None = None) -> None:
        self.master = master
        self.config = {**DRIVER_CONFIG, **(config or {})}
        self._session: Any = None
        self._lock = threading.Lock()
        self._exit_hooked = False

    def get(self) -> Any:
        with self._lock:
            if self._session is None:
                self._session = self._start()
                if not self._exit_hooked:
                    atexit.register(self.stop)
                    self._exit_hooked = True
            return self._session

    def _start(self) -> Any:
        from pyspark.sql import SparkSession

        builder = SparkSession.builder.appName(APP_NAME)
        if self.master.startswith("sc://"):
            builder = builder.remote(self.master)
        else:
            # pyspark marks a process that ever ran Spark Connect, and would then build a
            # Connect session again; a classic master after a stopped Connect session (tests)
            # needs the mark gone
            os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)
            builder = builder.master(self.master)
            for key, value in self.config.items():
                builder = builder.config(key, value)
        log.info("starting a SparkSession on %s", self.master)
        session = builder.getOrCreate()
        if not self.master.startswith("sc://"):
            session.sparkContext.setLogLevel("ERROR")
        return session

    @property
    def started(self) -> bool:
        return self._session is not None

    def stop(self) -> None:
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            log.info("stopping the SparkSession")
            session.stop()
