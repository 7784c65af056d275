"""Work units on Dask: a local process cluster, and a real scheduler with worker processes."""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import threading
import time
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import pytest
import rasterio
import xarray as xr
from rio_cogeo.cogeo import cog_validate
from tests.cdse import cdse_items
from tests.job_options import mosaic_options
from tests.servers.dask import TaskSpecRecorder, recorded

import cloudfree
from cloudfree.access import Signer
from cloudfree.config import FORWARDED_PREFIXES
from cloudfree.engine import EngineSpec, ThreadEngine, engine_spec, run_units
from cloudfree.engine.dask_engine import WorkerSetup, worker_environment
from cloudfree.errors import InvalidInputError, RunFailedError
from cloudfree.pipeline import MosaicResult, UnitRunner, build_request, plan, search
from cloudfree.sources.base import SearchedElsewhere
from cloudfree.store.manifest import Manifest

options = partial(mosaic_options, dates=("2021-11-01", "2021-12-31"))


def same_values(a, b, names=("red", "nir", "observations")):
    x, y = xr.open_zarr(a), xr.open_zarr(b)
    for name in names:
        np.testing.assert_array_equal(x[name].values, y[name].values, err_msg=name)


@pytest.fixture(scope="module")
def whole(archive, tmp_path_factory):
    """The thread engine's mosaic, the reference every engine must reproduce bit for bit."""
    out = tmp_path_factory.mktemp("threads") / "threads.zarr"
    return cloudfree.mosaic(**options(archive, out))


def test_local_cluster_is_bit_identical_to_threads_and_reports_progress(archive, tmp_path, whole):
    seen: list[tuple[int, int]] = []
    messages: list[str] = []
    result = cloudfree.mosaic(
        progress=lambda done, total: seen.append((done, total)),
        notify=messages.append,
        **options(archive, tmp_path / "local.zarr", workers=2),
    )
    assert [m for m in messages if m.startswith("Dask dashboard: http://127.0.0.1:")]
    assert result.units == whole.units and result.remaining == 0
    same_values(result.out, whole.out)
    assert seen[0] == (0, whole.units) and seen[-1] == (whole.units, whole.units)
    assert [d for d, _ in seen] == list(range(whole.units + 1))
    done = Manifest(result.out).finished()
    assert sorted(done) == sorted(Manifest(whole.out).finished())
    assert {k: r["sha256"] for k, r in done.items()} == {
        k: r["sha256"] for k, r in Manifest(whole.out).finished().items()
    }


def test_cogs_staged_while_a_cluster_runs_equal_cogs_made_at_the_end(archive, tmp_path):
    """With Dask, this process stages each period's COG as its units finish."""
    monthly = partial(options, archive, period="month")
    at_end = cloudfree.mosaic(**monthly(tmp_path / "t.zarr", cog_dir=str(tmp_path / "t")))
    staged = cloudfree.mosaic(
        **monthly(tmp_path / "d.zarr", cog_dir=str(tmp_path / "d"), workers=2)
    )
    assert len(staged.cogs) == len(at_end.cogs) == len(at_end.periods) == 2
    for mine, reference in zip(staged.cogs, at_end.cogs, strict=True):
        assert cog_validate(mine)[0]
        with rasterio.open(mine) as a, rasterio.open(reference) as b:
            np.testing.assert_array_equal(a.read(), b.read())
            assert a.profile == b.profile


def test_a_failing_unit_fails_the_run_and_is_recorded(archive, tmp_path, dask_cluster):
    out = tmp_path / "failed.zarr"
    with pytest.raises(RunFailedError, match="boom"):
        cloudfree.mosaic(
            **options(
                archive,
                out,
                method="tests.test_resume:Failing",
                dask_scheduler=dask_cluster.address,
            )
        )
    failures = Manifest(str(out)).failures()
    assert failures and all("boom" in r["reason"] for r in failures.values())
    assert not any("secret" in r["reason"] for r in failures.values())
    assert not (out / "_cloudfree" / "lock.json").exists()


def signal_mid_run(archive, out, dask_cluster, signum: int) -> tuple[MosaicResult, int, int]:
    """A slow mosaic on ``dask_cluster``; ``signum`` to one of its two workers after a unit.

    Returns the result, the signalled worker's pid and how many units had finished then.
    """
    dask_cluster.wait_for_workers()
    victim = min(dask_cluster.worker_pids().values())
    done = out / "_cloudfree" / "done"
    signalled: dict[str, int] = {}

    def signal_after_first_unit() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if done.exists() and any(done.iterdir()):
                signalled["finished_before"] = len(list(done.iterdir()))
                os.kill(victim, signum)
                return
            time.sleep(0.02)

    sender = threading.Thread(target=signal_after_first_unit)
    sender.start()
    try:
        result = cloudfree.mosaic(
            **options(
                archive,
                out,
                method="tests.slow_method:SlowMedian",
                method_options={"seconds": 0.4},
                dask_scheduler=dask_cluster.address,
            )
        )
    finally:
        sender.join()
        if signum == signal.SIGSTOP:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGCONT)  # if it was not restarted, let it go on
    return result, victim, signalled["finished_before"]


def test_a_worker_killed_mid_run_loses_nothing(archive, tmp_path, whole, dask_cluster):
    """SIGKILL one of two worker processes after a unit finished, while others wait."""
    result, victim, finished_before = signal_mid_run(
        archive, tmp_path / "killed.zarr", dask_cluster, signal.SIGKILL
    )
    assert 1 <= finished_before < whole.units  # killed mid-run
    with pytest.raises(ProcessLookupError):
        os.kill(victim, 0)
    assert result.remaining == 0
    same_values(result.out, whole.out)
    assert len(Manifest(result.out).finished()) == whole.units
    dask_cluster.wait_for_workers()  # the nanny restarted it, for the next tests


def test_a_worker_frozen_mid_run_is_restarted_and_loses_nothing(
    archive, tmp_path, whole, dask_cluster, monkeypatch, caplog
):
    """SIGSTOP one of two workers mid-run: alive but silent, it would hold its units forever."""
    from cloudfree.engine import dask_engine

    monkeypatch.setattr(dask_engine, "STALL_SECONDS", 2.0)
    monkeypatch.setattr(dask_engine, "PING_SECONDS", 3.0)
    with caplog.at_level("WARNING", logger="cloudfree.engine.dask_engine"):
        result, victim, finished_before = signal_mid_run(
            archive, tmp_path / "frozen.zarr", dask_cluster, signal.SIGSTOP
        )
    assert 1 <= finished_before < whole.units  # frozen mid-run
    assert any("restarting it" in r.getMessage() for r in caplog.records)
    with pytest.raises(ProcessLookupError):
        os.kill(victim, 0)  # its nanny ended it
    assert result.remaining == 0
    same_values(result.out, whole.out)
    assert len(Manifest(result.out).finished()) == whole.units
    dask_cluster.wait_for_workers()  # the nanny started a new one, for the next tests


def test_credentials_reach_workers_by_plugin_never_in_the_task_graph(
    archive, tmp_path, whole, dask_cluster, s3_server, monkeypatch
):
    """Workers started without credentials read a private store; no task holds a secret."""
    items = cdse_items(archive, s3_server, tmp_path)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "CDSE_S3_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    profile = tmp_path / "credentials"
    profile.write_text(
        f"[cdse]\naws_access_key_id = {s3_server.access_key}\n"
        f"aws_secret_access_key = {s3_server.secret_key}\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(profile))
    monkeypatch.setenv("CDSE_S3_PROFILE", "cdse")
    monkeypatch.setenv("CDSE_S3_ENDPOINT_URL", s3_server.endpoint_url)
    # a GDAL setting holding a secret (HTTP basic auth) travels the same way
    monkeypatch.setenv("CLOUDFREE_GDAL_GDAL_HTTP_USERPWD", "user:gdal-setting-secret")
    secrets = (s3_server.secret_key.encode(), b"gdal-setting-secret")

    with dask_cluster.client() as client:
        worker_env = client.run(lambda: {k: v for k, v in os.environ.items()})
        for env in worker_env.values():
            assert "CDSE_S3_PROFILE" not in env and "CDSE_S3_SECRET_KEY" not in env
            assert not any(s.decode() in " ".join(env.values()) for s in secrets)
        client.register_plugin(TaskSpecRecorder())
        cdse = options(archive, tmp_path / "cdse.zarr", dask_scheduler=dask_cluster.address)
        result = cloudfree.mosaic(**{**cdse, "stac": str(items)})
        graph = client.run_on_scheduler(recorded)
        for env in client.run(lambda: {k: v for k, v in os.environ.items()}).values():
            assert "CDSE_S3_SECRET_KEY" not in env  # the plugin's teardown restored them
    same_values(result.out, whole.out)
    assert b"cloudfree-" in graph and b"Sentinel-2" in graph  # the run's tasks were recorded
    for secret in secrets:
        assert secret not in graph
        for path in tmp_path.rglob("*"):
            if path.is_file() and path.name != "credentials":
                assert secret not in path.read_bytes(), path


def test_the_worker_plugin_sets_the_environment_also_on_a_worker_that_joins_later(
    dask_cluster, monkeypatch
):
    monkeypatch.setenv("CLOUDFREE_READ_RETRIES", "7")
    monkeypatch.setenv("CDSE_S3_ACCESS_KEY", "key-id")
    monkeypatch.setenv("CDSE_S3_SECRET_KEY", "plugin-secret")
    plugin = WorkerSetup(worker_environment())
    assert "plugin-secret" not in repr(plugin) and "CDSE_S3_SECRET_KEY" in repr(plugin)

    def seen_env():
        return os.environ.get("CLOUDFREE_READ_RETRIES"), os.environ.get("CDSE_S3_SECRET_KEY")

    dask_cluster.wait_for_workers()
    before = dask_cluster.worker_pids()
    with dask_cluster.client() as client:
        client.register_plugin(plugin, name="cloudfree-test-setup")
        try:
            assert set(client.run(seen_env).values()) == {("7", "plugin-secret")}
            os.kill(min(before.values()), signal.SIGKILL)  # its nanny starts a new worker
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    pids = set(client.run(os.getpid).values())
                except OSError:  # distributed's CommClosedError: the dead worker is listed
                    pids = set()
                if len(pids) == 2 and pids != set(before.values()):
                    break
                time.sleep(0.2)
            assert len(pids) == 2 and pids != set(before.values())
            assert set(client.run(seen_env).values()) == {("7", "plugin-secret")}
        finally:
            client.unregister_worker_plugin("cloudfree-test-setup")
        assert set(client.run(seen_env).values()) == {(None, None)}


def test_conflicting_engine_options_are_refused_by_the_cli(tmp_path):
    from click.testing import CliRunner

    from cloudfree.cli.main import cli

    out = str(tmp_path / "o.zarr")
    args = ["mosaic", "--stac", "x.json", "--bbox", "0", "0", "1", "1", "--start-date",
            "2021-01-01", "--end-date", "2021-02-01", "--out", out]  # fmt: skip
    result = CliRunner().invoke(
        cli, [*args, "--workers", "2", "--dask-scheduler", "tcp://127.0.0.1:1"]
    )
    assert result.exit_code == 2 and "Drop one" in result.stderr
    assert not list(tmp_path.iterdir())


def test_forwarded_environment_is_the_configuration_only(monkeypatch):
    monkeypatch.setenv("CLOUDFREE_THREADS", "3")
    monkeypatch.setenv("GDAL_HTTP_TIMEOUT", "30")
    monkeypatch.setenv("UNRELATED_VARIABLE", "x")
    env = worker_environment()
    assert env["CLOUDFREE_THREADS"] == "3" and env["GDAL_HTTP_TIMEOUT"] == "30"
    assert "UNRELATED_VARIABLE" not in env
    assert all(k.startswith(FORWARDED_PREFIXES) or k.startswith("CDSE_S3_") for k in env)


def test_signer_pickles_without_tokens_or_lock():
    signer = Signer("http://127.0.0.1:1/token")
    signer._tokens[("account", "container")] = ("sig=secret-token", 1e12)
    copy = pickle.loads(pickle.dumps(signer))
    assert copy.token_url == signer.token_url and copy._tokens == {}
    assert b"secret-token" not in pickle.dumps(signer)
    copy.invalidate("https://account.blob.core.windows.net/container/x.tif")  # a working lock


@dataclass(frozen=True)
class TokenSource:
    """A STAC API source whose URL carries a token, as some providers hand them out."""

    url: str = "https://stac.example.invalid/v1?token=stac-url-token"
    description: str = "a STAC API with a token"

    def search(self, query):
        raise AssertionError("not searched here")


def test_a_unit_task_ships_without_the_source_that_may_hold_a_token(archive, tmp_path):
    searched = build_request(**options(archive, tmp_path / "a.zarr"))
    job = plan(searched, search(searched))
    request = replace(searched, source=TokenSource())
    shipped = pickle.dumps(UnitRunner(request, job))
    assert b"stac-url-token" not in shipped
    worker = pickle.loads(shipped)
    assert isinstance(worker.request.source, SearchedElsewhere)
    assert worker.request.out == request.out and worker.job.geobox == job.geobox
    with pytest.raises(RuntimeError, match="cannot search"):
        worker.request.source.search(request.query)


def test_s2cloudless_mask_pickles_without_its_model():
    pytest.importorskip("s2cloudless")
    from cloudfree.masks import make_mask

    mask = make_mask("s2cloudless", {})
    data = pickle.dumps(mask)
    assert len(data) < 10_000  # the LightGBM model (11 MB) ships with the package
    copy = pickle.loads(data)
    assert copy.threshold == mask.threshold and copy._detector is not None


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (dict(dask_scheduler="tcp://127.0.0.1:1", coiled=True), "give only one"),
        (dict(dask_scheduler="tcp://127.0.0.1:1", workers=2), "Drop one"),
        (dict(dask_scheduler="tcp://127.0.0.1:1", threads=2), "Drop --threads"),
        (dict(dask_scheduler="nonsense"), "tcp://HOST:PORT"),
        (dict(dask_gateway="https://gateway.example"), r"cloudfree\[gateway\]"),
        (dict(coiled=True), r"cloudfree\[coiled\]"),
        (dict(workers=0), "at least 1"),
    ],
)
def test_engine_options_are_checked(given, message):
    with pytest.raises(InvalidInputError, match=message):
        engine_spec(**given)


def test_engine_spec_kinds():
    assert engine_spec() == EngineSpec() and EngineSpec().kind == "threads"
    spec = engine_spec(workers=2, threads=1)
    assert spec.kind == "local" and spec.threads_per_worker == 1
    assert engine_spec(dask_scheduler="tcp://127.0.0.1:8786").kind == "scheduler"


def test_run_units_keeps_its_thread_signature():
    seen: list[int] = []
    run_units([1, 2, 3], seen.append, threads=2, key=str)
    assert sorted(seen) == [1, 2, 3]
    run_units([4], seen.append, key=str, engine=ThreadEngine(1))
    assert sorted(seen) == [1, 2, 3, 4]


def test_a_cloudfree_error_from_gdal_reaches_the_client_as_itself():
    """rasterio's GDAL errors do not unpickle; the unit's error must not be chained to one."""
    import rasterio
    from distributed.core import error_message
    from distributed.protocol.pickle import loads

    from cloudfree.engine.dask_engine import _run
    from cloudfree.errors import ReadError

    def read(_unit):
        try:
            rasterio.open("/vsis3/no-such-bucket/x.tif")
        except rasterio.errors.RasterioError:
            raise ReadError("Reading band B04 failed") from None

    with pytest.raises(ReadError) as caught:
        _run(read, None)
    error = loads(error_message(caught.value)["exception"].data)  # what the client gets
    assert type(error) is ReadError and "B04" in str(error)


def test_an_s3_archive_source_pickles_without_its_credentials(s3_server, monkeypatch):
    from cloudfree.sources.archive import open_archive

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("AWS_REGION", s3_server.region)
    bucket = s3_server.create_bucket()
    s3_server.client().put_object(Bucket=bucket, Key="tiles/README", Body=b"layout")
    source = open_archive(f"s3://{bucket}")
    data = pickle.dumps(source)
    assert s3_server.secret_key.encode() not in data
    copy = pickle.loads(data)  # reopened with this process's credentials
    assert copy.fs.exists(f"{copy.root}/tiles/README")


def _die(unit):
    if unit == "doomed":
        os._exit(1)  # as the kernel's OOM killer would


def test_a_unit_that_kills_its_worker_fails_the_run_naming_it(tmp_path):
    import dask
    from distributed import Client, LocalCluster

    from cloudfree.engine.dask_engine import DaskEngine

    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as client,
        pytest.raises(RunFailedError, match="doomed was running when a worker died") as e,
    ):
        # one unit at a time: "fine" is done before "doomed" kills the worker
        engine = DaskEngine(client, in_flight_per_thread=1)
        run_units(["fine", "doomed"], _die, key=str, engine=engine)
    assert e.value.unit_key == "doomed" and "--memory-limit" in str(e.value)
