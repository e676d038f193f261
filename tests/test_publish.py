"""gpt4llm publish: the cards parse with huggingface_hub and carry the Hub's metadata; --dry-run
lists exactly what goes up; no token reaches an output, a card or an uploaded manifest.

Data: a real `generate` (loopback fake OpenAI server) of `alpaca_data.json` (CC BY-NC 4.0,
carried over), audited; model: a tiny `train sft`, evaluated by `eval rouge` (model-index)."""

from __future__ import annotations

import hashlib
import json
from importlib import resources

import pytest
from cli_helpers import tiny_sft, write_jsonl

pytest.importorskip("huggingface_hub")

TOKEN = "hf_FAKEtoken0123456789abcdefXYZ"  # a fake HF_TOKEN: must appear nowhere
INSTRUCTIONS = [
    {"instruction": f"Give a word that rhymes with {w}.", "input": "", "output": "old answer"}
    for w in ("cat", "dog", "sun", "tree", "cake")
]


def _listed(out: str) -> list[str]:
    """The paths of the dry run's file list."""
    lines = out.split("would upload", 1)[1].splitlines()[1:]
    return [x.split()[0] for x in lines if x.startswith("  ") and "bytes)" in x]


@pytest.fixture
def audited(tmp_path, fake_openai, cli, monkeypatch):
    """alpaca_data.json -> generate (fake teacher) -> audit: the clean file to publish."""
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    fake_openai.responder = lambda messages, body: {"content": "hat", "model": "gpt-4-0613"}
    data = tmp_path / "alpaca_data.json"  # the Stanford Alpaca file's name: CC BY-NC 4.0
    data.write_text(json.dumps(INSTRUCTIONS))
    sft = tmp_path / "sft.jsonl"
    code, out = cli(
        "generate", data, "-o", sft, "--teacher", "fake-model", "--teacher-base-url",
        fake_openai.base_url, "--teacher-cache", tmp_path / "c.sqlite", "--temperature", "0.3",
    )  # fmt: skip
    assert code == 0, out
    clean = tmp_path / "sft.clean.jsonl"
    # a token typed where it does not belong: in the manifest's command and config
    code, out = cli("audit", sft, "-o", clean, "--run-name", TOKEN)
    assert code == 0, out
    return clean


def test_dataset_card_from_the_manifests_and_the_exact_upload_list(audited, tmp_path, cli):
    from huggingface_hub import DatasetCard

    code, out = cli("publish", audited, "--repo", "me/rhymes", "--dry-run")
    assert code == 0, out
    assert TOKEN not in out
    assert "***" in out
    assert _listed(out) == ["sft.clean.jsonl", "sft.clean.jsonl.manifest.json", "README.md"]
    assert "https://huggingface.co/datasets/me/rhymes (public)" in out
    card = DatasetCard(out[out.index("---\n") :])
    meta = card.data.to_dict()
    assert meta["license"] == "cc-by-nc-4.0"  # carried over from alpaca_data.json
    assert meta["language"] == ["en"] and meta["task_categories"] == ["text-generation"]
    assert {"gpt4llm", "synthetic", "audit"} <= set(meta["tags"])
    assert meta["size_categories"] == ["n<1K"]
    assert meta["configs"][0]["data_files"][0]["path"] == "sft.clean.jsonl"
    text = card.text
    n = len(audited.read_text().splitlines())
    assert f"`sft.clean.jsonl`: {n} records by `gpt4llm audit` (teacher: fake-model)" in text
    system = resources.files("gpt4llm.prompts").joinpath("teacher_system.txt").read_bytes()
    assert hashlib.sha256(system).hexdigest() in text  # the teacher's prompt, by sha256
    gen = json.loads((tmp_path / "sft.jsonl.manifest.json").read_text())
    assert f"| written | {gen['summary']['written']} |" in text
    assert "| fake-model |" in text and "| temperature | 0.3 |" in text
    assert gen["summary"]["reported_models"] == ["gpt-4-0613"]  # the id the endpoint answered
    assert "Model id the endpoint reported: gpt-4-0613." in text
    audit = json.loads((tmp_path / "sft.clean.jsonl.manifest.json").read_text())
    assert "## Audit and decontamination" in text and "No `gpt4llm audit`" not in text
    first = next(k for k, v in audit["summary"].items() if isinstance(v, int))
    assert f"| {first} | {audit['summary'][first]} |" in text
    assert "gpt4llm audit" in text and "```yaml" in text  # the command and config to rerun


class FakeHub:
    """A loopback HTTP server answering the three Hub calls an upload makes: create the repo,
    preupload (every file 'regular': its bytes go inline in the commit), commit (NDJSON)."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        hub = self
        self.requests: list[tuple[str, str, dict, bytes]] = []  # method, path, headers, body

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hub.requests.append(("POST", self.path, dict(self.headers), body))
                reply = hub.answer(self.path, body)
                data = json.dumps(reply).encode()
                self.send_response(200 if reply is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path: str, body: bytes):
        if path == "/api/repos/create":
            spec = json.loads(body)
            return {"url": f"{self.url}/datasets/{spec['organization']}/{spec['name']}"}
        if path == "/api/validate-yaml":  # the Hub checks a README's metadata before a commit
            return {"errors": [], "warnings": []}
        if "/preupload/" in path:
            files = json.loads(body)["files"]
            return {
                "files": [
                    {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                    for f in files
                ]
            }
        if "/commit/" in path:  # /api/datasets/ORG/NAME/commit/main
            repo = path.removeprefix("/api/").split("/commit/")[0]
            return {"commitUrl": f"{self.url}/{repo}/commit/{'1' * 40}", "commitOid": "1" * 40}
        return None

    def committed(self) -> dict[str, bytes]:
        """{path in repo: bytes} of the commit's files."""
        import base64

        (body,) = [b for _, p, _, b in self.requests if "/commit/" in p]
        out = {}
        for line in body.decode().splitlines():
            item = json.loads(line)
            if item["key"] == "file":
                out[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
        return out


def test_the_upload_sends_exactly_the_listed_files_to_the_hub_api(audited, cli, monkeypatch):
    """The real huggingface_hub upload against a loopback fake of the Hub's HTTP API: the repo
    is created (private), the card sent for the Hub's metadata check, and one commit carries
    exactly the dry run's files; the token goes only in the Authorization header, never in a
    file. (The Hub's own metadata rules run on its servers: not checked here.)"""
    from huggingface_hub import constants

    hub = FakeHub()
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    code, out = cli("publish", audited, "--repo", "me/rhymes", "--private")
    hub.server.shutdown()
    assert code == 0, out
    assert TOKEN not in out and f"published: {hub.url}/datasets/me/rhymes" in out
    create = json.loads(hub.requests[0][3])
    assert create == {**create, "name": "rhymes", "organization": "me", "type": "dataset"}
    assert create.get("visibility") == "private" or create.get("private") is True, create
    assert all(h.get("authorization") == f"Bearer {TOKEN}" for _, _, h, _ in hub.requests)
    (checked,) = [json.loads(b) for _, p, _, b in hub.requests if p == "/api/validate-yaml"]
    assert checked["repoType"] == "dataset" and checked["content"].startswith("---\nlanguage:")
    files = hub.committed()
    assert list(files) == ["sft.clean.jsonl", "sft.clean.jsonl.manifest.json", "README.md"]
    assert files["sft.clean.jsonl"] == audited.read_bytes()
    for name in ("sft.clean.jsonl.manifest.json", "README.md"):
        assert TOKEN.encode() not in files[name] and b"***" in files[name]
    assert b"license: cc-by-nc-4.0" in files["README.md"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("transformers")
    from tiny_lm import make_tiny_lm

    return make_tiny_lm(tmp_path_factory.mktemp("tiny") / "lm")


def test_model_card_with_model_index_from_eval_rouge(tiny, tmp_path, cli):
    from huggingface_hub import ModelCard

    student = tiny_sft(cli, tiny, tmp_path, 2, "--save-steps", "1")
    assert (student / "checkpoints").is_dir()
    refs = write_jsonl(
        tmp_path / "heldout.jsonl", [{"id": "1", "instruction": "x", "output": "a b c"}]
    )
    preds = write_jsonl(tmp_path / "preds.jsonl", [{"id": "1", "output": "a b d"}])
    code, out = cli("eval", "rouge", preds, refs, "-o", tmp_path / "rouge")
    assert code == 0, out
    code, out = cli(
        "publish", student, "--repo", "me/student", "--dry-run", "--eval", tmp_path / "rouge",
        "--license", "apache-2.0",
    )  # fmt: skip
    assert code == 0, out
    listed = _listed(out)
    expected = sorted(
        p.relative_to(student).as_posix()
        for p in student.rglob("*")
        if p.is_file() and "checkpoints" not in p.parts and p.name != "README.md"
    )
    assert sorted(listed) == sorted([*expected, "README.md"]) and "model.safetensors" in listed
    assert not any(p.startswith("checkpoints") for p in listed)
    assert "https://huggingface.co/me/student (public)" in out
    card = ModelCard(out[out.index("---\n") :])
    meta = card.data.to_dict()
    assert meta["license"] == "apache-2.0" and meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "text-generation" and "gpt4llm" in meta["tags"]
    rouge = json.loads((tmp_path / "rouge" / "summary.json").read_text())["all"]
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results["rougeL"] == pytest.approx(rouge["rougeL"], abs=1e-4)
    assert meta["model-index"][0]["results"][0]["dataset"]["name"] == "heldout"
    assert "| max_steps | 2 |" in card.text and "gpt4llm train sft" in card.text


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["nowhere.jsonl", "--repo", "a/b"], "nowhere.jsonl: no such file"),
        (["{data}", "--repo", "a/b"], "no manifest"),
        (["{data}", "--repo", "no-slash"], "--repo: expected ORG/NAME"),
    ],
)
def test_bad_input_is_one_line(tmp_path, cli, args, says):
    data = write_jsonl(tmp_path / "d.jsonl", INSTRUCTIONS)
    code, out = cli("publish", *[a.format(data=data) for a in args], "--dry-run")
    assert code == 2 and "Traceback" not in out
    (line,) = [x for x in out.splitlines() if x.strip()]
    assert line.startswith("error") and says in line


def test_the_hub_base_model_is_followed_through_our_manifests(tmp_path):
    from gpt4llm.publish.card import hub_base_model

    student = tmp_path / "student"  # trained by us from the embedded model
    student.mkdir()
    (student / "manifest.json").write_text(json.dumps({"config": {"model": "embedded"}}))
    dpo = tmp_path / "dpo"  # trained by us from the student
    dpo.mkdir()
    (dpo / "manifest.json").write_text(json.dumps({"config": {"model": str(student)}}))
    assert hub_base_model(str(dpo)) == hub_base_model("embedded") == "google/gemma-3-270m"
    assert hub_base_model("meta-llama/Llama-2-7b-hf") == "meta-llama/Llama-2-7b-hf"
    assert hub_base_model(str(tmp_path)) is None  # a local model of unknown making


# --------------------------------------------------------------------------- bad input
# `publish` is no stage (no output, never a pipeline step), so tests/test_bad_input_matrix.py and
# tests/test_print_config.py, which walk the stage table, do not see it: the same classes of case
# are generated here from its Config, option by option.
BAD_STRINGS = ("", "\x00", "bad-\udcff")
BAD_PATHS = ("missing", "directory", "non-utf8", "no-manifest", "failed-run")


def _publish_cases() -> list[tuple[str, str]]:
    import typing

    from gpt4llm.publish import Config

    cases = []
    for name, info in Config.model_fields.items():
        inner = typing.get_args(info.annotation) or (info.annotation,)
        kinds = {a for t in inner for a in (typing.get_args(t) or (t,))}
        option = name.replace("_", "-")
        if bool in kinds:
            continue  # a flag: no value to get wrong
        if any(isinstance(k, type) and issubclass(k, __import__("pathlib").Path) for k in kinds):
            cases += [(option, p) for p in BAD_PATHS]
        else:
            cases += [(option, s) for s in BAD_STRINGS]
    return cases


def _bad_path(w, kind: str):
    if kind == "missing":
        return w / "nowhere.jsonl"
    if kind == "directory":
        (w / "adir").mkdir()
        return w / "adir"
    if kind == "non-utf8":
        return w / "bad-\udcff.jsonl"
    if kind == "no-manifest":
        return write_jsonl(w / "plain.jsonl", INSTRUCTIONS)
    failed = write_jsonl(w / "failed.jsonl", INSTRUCTIONS)  # its last run failed
    (w / "failed.jsonl.manifest.json").write_text(
        json.dumps({"stage": "audit", "status": "failed"})
    )
    return failed


def _tree(w) -> dict:
    return {p: p.read_bytes() for p in sorted(w.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def publishable(tmp_path_factory):
    """A data set with its manifest (a real `audit`, which calls no model)."""
    import sys

    from gpt4llm.cli import main

    w = tmp_path_factory.mktemp("publishable")
    data = write_jsonl(w / "sft.jsonl", INSTRUCTIONS)
    sys_argv = sys.argv
    sys.argv = ["gpt4llm", "audit", str(data), "-o", str(w / "clean.jsonl")]
    try:
        main()
    except SystemExit as e:
        assert not e.code
    finally:
        sys.argv = sys_argv
    return w / "clean.jsonl"


@pytest.mark.parametrize(("option", "value"), _publish_cases(), ids=lambda v: ascii(v)[1:-1])
def test_publish_bad_input_matrix(option, value, publishable, tmp_path, cli, monkeypatch):
    """Each bad value of each option of a valid `publish --dry-run`: exit 0, or one `error:`
    line and exit 2; never a traceback; no file changed."""
    import shutil

    data = shutil.copy(publishable, tmp_path / "clean.jsonl")
    shutil.copy(f"{publishable}.manifest.json", tmp_path / "clean.jsonl.manifest.json")
    monkeypatch.chdir(tmp_path)
    bad = str(_bad_path(tmp_path, value)) if value in BAD_PATHS else value
    args = {"path": data, "repo": "me/data"}
    if option == "path":
        args["path"] = bad
    else:
        args[option] = bad
    argv = [str(args.pop("path")), "--dry-run"]
    for name, v in args.items():
        argv += [f"--{name}", v]
    before = _tree(tmp_path)
    code, out = cli("publish", *argv)
    assert "Traceback" not in out
    if code != 0:
        errors = [x for x in out.splitlines() if x.lower().startswith("error")]
        assert code == 2 and len(errors) == 1 and len(out.strip().splitlines()) == 1, out
    else:
        assert "would upload 3 files" in out
    assert _tree(tmp_path) == before


def test_publish_print_config_reads_back_exactly(publishable, tmp_path, cli):
    """--print-config, then --config of what it printed: the same settings, odd strings too."""
    odd = "a\x85b line\u2028sep tab\there 中文 é\nnull\nyes\n~\n"
    args = ["publish", publishable, "--repo", "me/data", "--message", odd, "--license", "1e3"]
    args += ["--language", "zh-Hans", "--language", "en"]
    code, first = cli(*args, "--print-config")
    assert code == 0, first
    (tmp_path / "c.yaml").write_text(first, encoding="utf-8")
    code, second = cli("publish", "--config", tmp_path / "c.yaml", "--print-config")
    assert code == 0 and second == first
    import yaml

    settings = yaml.safe_load(second)
    assert settings["message"] == odd and settings["license"] == "1e3"
    assert settings["language"] == ["zh-Hans", "en"]


def test_eval_outputs_are_checked_before_anything_is_read(tmp_path):
    """--eval on a model: a path that is not an evaluation output is one line, not a card
    silently without its results."""
    from gpt4llm.errors import UserError
    from gpt4llm.publish import _check_eval

    (tmp_path / "rouge").mkdir()
    (tmp_path / "empty").mkdir()
    (tmp_path / "rouge" / "summary.json").write_text("{}")
    _check_eval([tmp_path / "rouge"], "model")  # fine
    for bad in ("nowhere", "empty"):
        with pytest.raises(UserError, match="not an evaluation output"):
            _check_eval([tmp_path / bad], "model")
    with pytest.raises(UserError, match="a model's card, not a data set's"):
        _check_eval([tmp_path / "rouge"], "dataset")
