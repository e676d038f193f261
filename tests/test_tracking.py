"""--report-to: every stage's run in the real trackers, read back through their own readers.

MLflow: a real `mlflow server` (SQLite backend, artifacts served) on 127.0.0.1, read through
MlflowClient; TensorBoard: event files read by tensorboard's EventAccumulator; trackio: its
local SQLite store; W&B: offline mode (the run's files written, nothing sent)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from cli_helpers import tiny_sft, write_jsonl

pytest.importorskip("mlflow")

REFS = [
    {"id": "a", "instruction": "Say hi.", "input": "", "output": "hello there my good friend"},
    {"id": "b", "instruction": "Count.", "input": "", "output": "one two three"},
    {"id": "c", "instruction": "Name fruit.", "input": "", "output": "apples and pears"},
]
PREDS = [
    {"id": "a", "output": "hello my friend"},
    {"id": "b", "output": "one two four"},
    {"id": "c", "output": "apples"},
]


@pytest.fixture
def files(tmp_path):
    return write_jsonl(tmp_path / "pred.jsonl", PREDS), write_jsonl(tmp_path / "ref.jsonl", REFS)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` with a SQLite backend and served artifacts, on a free loopback port."""
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    exe = Path(sys.executable).with_name("mlflow")
    args = [str(exe), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    args += ["--backend-store-uri", f"sqlite:///{root}/mlflow.db"]
    args += ["--artifacts-destination", str(root / "artifacts")]
    log = open(root / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited: {(root / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not start in 120 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def _rouge(cli, files, out: Path, tracker: str, name: str) -> dict:
    """`eval rouge` reported to `tracker` as run `name`: the summary.json it wrote."""
    code, text = cli("eval", "rouge", *files, "-o", out, "--report-to", tracker, "--run-name", name)
    assert code == 0, text
    return _summary(out)


def _bucket(summary: dict, name: str) -> dict:
    return next(b for b in summary["buckets"] if b["bucket"] == name)


@pytest.mark.parametrize(
    "store",
    [
        "sqlite",  # MLflow's own SQLite store, no server
        # the server takes ~45 s to start on a busy 2-core machine
        pytest.param("server", marks=pytest.mark.slow),
    ],
)
def test_pipeline_is_one_parent_run_with_a_child_run_per_stage_in_mlflow(
    store, files, tmp_path, cli, monkeypatch, request
):
    import mlflow

    uri = request.getfixturevalue("mlflow_server") if store == "server" else None
    uri = uri or f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # MLflow's SQLite store puts artifacts in ./mlruns
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "pipeline-test")
    pred, ref = files
    cfg = tmp_path / "p.yaml"
    cfg.write_text(
        "# gpt4llm pipeline p.yaml --report-to mlflow\n"
        "stages:\n"
        f"  rouge_a: {{stage: eval rouge, predictions: {pred}, references: {ref},"
        f" output: {tmp_path / 'a'}}}\n"
        f"  rouge_b: {{stage: eval rouge, predictions: {pred}, references: {ref},"
        f" output: {tmp_path / 'b'}, stem: false}}\n"
    )
    code, out = cli("pipeline", cfg, "--report-to", "mlflow", "--run-name", "nightly")
    assert code == 0, out
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("pipeline-test")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"nightly", "rouge_a", "rouge_b"}
    parent = runs["nightly"]
    assert parent.info.status == "FINISHED" and parent.data.params["pipeline"] == str(cfg)
    assert parent.data.metrics["stages_ran"] == 2 and parent.data.metrics["stages_skipped"] == 0
    for name, stem in (("rouge_a", "true"), ("rouge_b", "false")):
        child = runs[name]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.status == "FINISHED" and child.data.tags["gpt4llm.status"] == "ok"
        assert child.data.params["config.stem"] == stem
        assert child.data.params["config.predictions"] == str(pred)
        summary = _summary(tmp_path / name[-1])
        assert child.data.metrics["buckets.3-5.rougeL"] == pytest.approx(
            _bucket(summary, "3-5")["rougeL"]
        )
        assert child.data.metrics["all.rouge1"] == pytest.approx(summary["all"]["rouge1"])
        assert child.data.metrics["n"] == 3
        arts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert arts == {"manifest.json", "summary.json"}
        got = client.download_artifacts(child.info.run_id, "summary.json", str(tmp_path))
        assert json.loads(Path(got).read_text()) == summary

    # the tracker is not part of what a stage computes: a rerun skips both stages
    code, out = cli("pipeline", cfg, "--report-to", "mlflow", "--run-name", "again")
    assert code == 0 and out.count("skipped (up to date)") == 2, out
    names = [r.info.run_name for r in client.search_runs([exp.experiment_id])]
    assert sorted(names) == ["again", "nightly", "rouge_a", "rouge_b"]


def test_tensorboard_event_files_read_back(files, tmp_path, cli, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))
    summary = _rouge(cli, files, tmp_path / "r", "tensorboard", "rg")
    assert os.environ["TENSORBOARD_LOGGING_DIR"] == str(tmp_path / "tb")  # put back
    acc = EventAccumulator(str(tmp_path / "tb" / "rg"), size_guidance={"tensors": 0})
    acc.Reload()
    rouge = acc.Scalars("buckets.3-5.rougeL")
    assert len(rouge) == 1 and rouge[0].value == pytest.approx(_bucket(summary, "3-5")["rougeL"])
    assert acc.Scalars("n_predictions")[0].value == 3
    text = acc.Tensors("summary")[0].tensor_proto.string_val[0].decode()
    assert text.startswith("status: ok") and json.loads(text.split("\n\n", 1)[1]) == summary
    config = json.loads(acc.Tensors("config")[0].tensor_proto.string_val[0].decode())
    assert config["config.references"] == str(files[1])


def test_trackio_local_store(files, tmp_path, cli, monkeypatch):
    import trackio.sqlite_storage as store

    monkeypatch.setattr(store, "TRACKIO_DIR", tmp_path / "trackio")
    monkeypatch.setenv("TRACKIO_PROJECT", "tracking-test")
    summary = _rouge(cli, files, tmp_path / "r", "trackio", "rg")
    assert store.SQLiteStorage.get_runs("tracking-test") == ["rg"]
    (logged,) = store.SQLiteStorage.get_logs("tracking-test", "rg")
    assert logged["buckets.3-5.rouge2"] == pytest.approx(_bucket(summary, "3-5")["rouge2"])
    assert logged["n_references"] == 3
    config = store.SQLiteStorage.get_run_config("tracking-test", "rg")
    assert config["config.output"] == str(tmp_path / "r") and config["status"] == "ok"


def test_wandb_offline_writes_the_run_and_sends_nothing(files, tmp_path, cli, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_PROJECT", "tracking-test")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    summary = _rouge(cli, files, tmp_path / "r", "wandb", "rg-offline")
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    (data,) = run_dir.glob("run-*.wandb")
    for _ in range(50):  # the run's records (protobuf), as wandb's service flushes them
        raw = data.read_bytes()
        if b"summary.json" in raw:
            break
        time.sleep(0.2)
    assert b"rg-offline" in raw and b"tracking-test" in raw
    value = _bucket(summary, "3-5")["rougeL"]
    assert b"buckets.3-5.rougeL" in raw and json.dumps(value).encode()[:8] in raw
    assert b"summary.json" in raw and b"manifest.json" in raw  # the artifact's files


def test_a_missing_tracker_is_one_line_naming_the_extra(files, tmp_path, cli, monkeypatch):
    from gpt4llm import tracking

    real = tracking.importlib.util.find_spec
    monkeypatch.setattr(
        tracking.importlib.util, "find_spec", lambda n: None if n == "wandb" else real(n)
    )
    pred, ref = files
    code, out = cli("eval", "rouge", pred, ref, "-o", tmp_path / "r", "--report-to", "wandb")
    assert code == 2 and "Traceback" not in out
    (line,) = [x for x in out.splitlines() if x.startswith("error")]
    assert "--report-to wandb" in line and "pip install 'gpt4llm[track]'" in line
    assert not (tmp_path / "r").exists()  # refused before the stage ran


def test_none_means_none_and_the_tracker_is_not_in_the_config_hash(tmp_path, cli):
    from gpt4llm.evaluate.rouge import Config
    from gpt4llm.provenance import config_hash

    plain = Config(predictions="p.jsonl", references="r.jsonl")
    tracked = plain.model_copy(update={"report_to": ["mlflow"], "run_name": "x"})
    assert config_hash(plain) == config_hash(tracked)
    assert config_hash(plain) != config_hash(plain.model_copy(update={"stem": False}))
    from gpt4llm.tracking import trackers

    assert trackers(["none"]) == [] and trackers(["mlflow", "mlflow"]) == ["mlflow"]
    code, out = cli("eval", "rouge", "p", "r", "--report-to", "comet")
    assert code == 2 and out.count("\n") == 1 and "--report-to[0]" in out and "'mlflow'" in out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("transformers")
    from tiny_lm import make_tiny_lm

    return make_tiny_lm(tmp_path_factory.mktemp("tiny") / "lm")


def test_a_trainer_logs_through_transformers_integration_into_the_commands_run(
    tiny, tmp_path, cli, monkeypatch
):
    """train sft --report-to mlflow: the loss curve (transformers' MLflowCallback) and our
    summary land in ONE run, the one the command opened."""
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # MLflow's SQLite store puts artifacts in ./mlruns
    out = tiny_sft(cli, tiny, tmp_path, 4, "--logging-steps", "1", "--report-to", "mlflow",
                   "--run-name", "sft-run")  # fmt: skip
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("gpt4llm")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.run_name == "sft-run" and run.info.status == "FINISHED"
    losses = client.get_metric_history(run.info.run_id, "loss")  # logged by transformers
    assert [m.step for m in losses] == [1, 2, 3, 4]
    assert all(m.value > 0 for m in losses)
    assert run.data.params["max_steps"] == "4"  # TrainingArguments, by the integration
    summary = json.loads((out / "manifest.json").read_text())["summary"]
    assert run.data.metrics["steps"] == summary["steps"] == 4  # our summary, same run ...
    (ours,) = client.get_metric_history(run.info.run_id, "train_examples")
    assert ours.step == 4  # ... at the last step, where the integration's own end numbers are
    assert run.data.params["config.model"] == str(tiny)


GATEWAY_KEY = "gw-Zq8vN3kP0xLr7TyW"  # no sk-/hf_ shape: only the config's api_key_env finds it


def test_no_secret_reaches_a_tracker(fake_openai, tmp_path, cli, monkeypatch):
    """A key named by the config's --teacher-api-key-env (a gateway that also takes it in the
    URL's path) and OPENAI_API_KEY: read back from MLflow's SQLite store (params, tags, metric
    names, artifacts), and grepped for in TensorBoard's and trackio's files."""
    import mlflow
    import trackio.sqlite_storage as store
    from repo_paths import TEST_KEY

    monkeypatch.chdir(tmp_path)  # MLflow's SQLite store puts artifacts in ./mlruns
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))
    monkeypatch.setattr(store, "TRACKIO_DIR", tmp_path / "trackio")
    monkeypatch.setenv("TRACKIO_PROJECT", "secrets-test")
    monkeypatch.setenv("GATEWAY_CREDENTIAL", GATEWAY_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    fake_openai.responder = lambda m, b: {"content": "fine"}
    src = write_jsonl(tmp_path / "in.jsonl", [{"instruction": "Say hi."}])
    url = fake_openai.base_url.replace("/v1", f"/gw/{GATEWAY_KEY}/v1")
    args = ["generate", src, "-o", tmp_path / "out.jsonl", "--teacher", "gpt-4"]
    args += ["--teacher-base-url", url, "--teacher-api-key-env", "GATEWAY_CREDENTIAL"]
    for tracker in ("mlflow", "tensorboard", "trackio"):
        args += ["--report-to", tracker]
    code, out = cli(*args, "--run-name", "keys")
    assert code == 0, out
    assert fake_openai.calls == 1

    client = mlflow.MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("gpt4llm").experiment_id])
    params, tags = run.data.params, run.data.tags
    assert params["config.teacher.base_url"].endswith("/gw/***/v1")
    assert params["config.teacher.api_key_env"] == "GATEWAY_CREDENTIAL"  # a name, not a key
    logged = [*params.items(), *tags.items(), *run.data.metrics]
    arts = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert sorted(arts) == ["out.jsonl.manifest.json", "summary.json"]
    texts = [
        Path(client.download_artifacts(run.info.run_id, a, str(tmp_path))).read_text() for a in arts
    ]
    assert any("/gw/***/v1" in t for t in texts)  # the manifest's config, scrubbed
    for secret in (GATEWAY_KEY, TEST_KEY):
        assert not any(secret in str(x) for x in logged), secret
        assert not any(secret in t for t in texts), secret
    files = [*(tmp_path / "tb").rglob("*"), *(tmp_path / "trackio").rglob("*")]
    files = [f for f in files if f.is_file()]
    assert any(f.name.startswith("events.out") for f in files) and len(files) > 1
    assert any(b"/gw/***/v1" in f.read_bytes() for f in files)
    for f in files:
        raw = f.read_bytes()
        assert GATEWAY_KEY.encode() not in raw and TEST_KEY.encode() not in raw, f


def test_the_scrubber_blots_urls_headers_and_the_keys_a_config_names(monkeypatch):
    from gpt4llm.config import LLMConfig
    from gpt4llm.redact import scrub

    monkeypatch.setenv("GATEWAY_CREDENTIAL", GATEWAY_KEY)
    config = {"teacher": LLMConfig(model="m", api_key_env="GATEWAY_CREDENTIAL").model_dump()}
    assert scrub(f"key {GATEWAY_KEY}") == f"key {GATEWAY_KEY}"  # not a secret by its name
    assert scrub(f"key {GATEWAY_KEY}", config) == "key ***"
    assert scrub("postgresql://ann:pw1@db/x https://u@h/v1") == (
        "postgresql://***@db/x https://***@h/v1"
    )
    assert scrub("http://h/v1?api_key=abc&n=2") == "http://h/v1?api_key=***&n=2"
    text = '{"Authorization": "Bearer tok123456789", "x-api-key": "k1"} hf_' + "a" * 30
    assert scrub(text) == '{"Authorization": "Bearer ***", "x-api-key": "***"} ***'
    kept = '"api_key_env": "OPENAI_API_KEY", "max_new_tokens": 5, "base_url": "http://h:8/v1"'
    assert scrub(kept) == kept


@pytest.mark.slow  # accelerate launch starts a second Python that imports torch (~20 s here)
def test_a_launched_trainer_logs_into_the_commands_run(tiny, tmp_path, cli, monkeypatch):
    """train sft --launcher accelerate --report-to mlflow: the launched process's loss curve
    (transformers' MLflowCallback) and its summary and manifest (our record) land in the run the
    command opened: one run, not one per process."""
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # MLflow's SQLite store puts artifacts in ./mlruns
    out = tiny_sft(cli, tiny, tmp_path, 2, "--logging-steps", "1", "--report-to", "mlflow",
                   "--launcher", "accelerate", "--num-processes", "1")  # fmt: skip
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("gpt4llm").experiment_id])
    assert run.info.run_name == "train sft" and run.info.status == "FINISHED"
    losses = client.get_metric_history(run.info.run_id, "loss")  # the child's integration
    assert [m.step for m in losses] == [1, 2]
    summary = json.loads((out / "manifest.json").read_text())["summary"]
    assert run.data.metrics["steps"] == summary["steps"] == 2  # the child's record
    assert run.data.params["config.launcher"] == "python"  # the launched process's settings
    assert "manifest.json" in {a.path for a in client.list_artifacts(run.info.run_id)}
