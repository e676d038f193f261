"""Data in the formats the field uses (gpt4llm.formats): Parquet, CSV, `datasets` directories
and hf:// datasets read by real stages, Parquet and `datasets` directories (`*.hf`) written by
them, `--field` mapping and chat `messages` records, and bad rows named in one line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cli_helpers import cli, write_jsonl
from repo_paths import TEST_KEY

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
datasets = pytest.importorskip("datasets")


def _parquet(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _one_line_error(code: int, err: str) -> str:
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert "Traceback" not in err
    return err


@pytest.fixture
def teacher(fake_openai, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    fake_openai.responder = lambda m, b: {"content": "A:" + m[-1]["content"][-12:]}
    return ["--teacher", "gpt-4", "--teacher-base-url", fake_openai.base_url]


def test_generate_reads_csv_with_field_mapping_and_writes_parquet(
    teacher, fake_openai, tmp_path, monkeypatch, capsys
):
    src = tmp_path / "qa.csv"
    # a quoted cell over two lines, a comma inside a cell, a column we do not map (kept)
    src.write_text(
        'question,context,topic\n"Say hello,\nplease",,greet\nAdd the numbers,"2, 3",math\n'
    )
    out = tmp_path / "sft.parquet"
    args = ["generate", src, "-o", out, *teacher, "--field", "instruction=question,input=context"]
    code, err = cli(args, monkeypatch, capsys)
    assert code == 0, err
    rows = pq.read_table(out).to_pylist()
    assert [r["instruction"] for r in rows] == ["Say hello,\nplease", "Add the numbers"]
    assert [r["input"] for r in rows] == ["", "2, 3"]
    assert [r["topic"] for r in rows] == ["greet", "math"]  # extra columns kept
    assert all(r["output"].startswith("A:") for r in rows) and fake_openai.calls == 2
    assert "question" not in rows[0]  # the mapped column became ours
    assert not list(tmp_path.glob(".sft.parquet.*"))  # the atomic temporary is gone
    assert (tmp_path / "sft.parquet.manifest.json").exists()

    # the Parquet output is an input like any other: a second stage reads it, paying nothing
    again = tmp_path / "again.jsonl"
    code, err = cli(["generate", out, "-o", again, *teacher], monkeypatch, capsys)
    assert code == 0, err
    assert [json.loads(x)["instruction"] for x in again.read_text().splitlines()] == [
        r["instruction"] for r in rows
    ]
    assert fake_openai.calls == 2  # the same prompts: answered from the request cache


def test_parquet_output_refused_before_the_first_call_without_pyarrow(
    teacher, fake_openai, tmp_path, monkeypatch, capsys
):
    import importlib.util

    src = write_jsonl(tmp_path / "i.jsonl", [{"instruction": "x"}])
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "pyarrow" else real(n, *a)
    )
    code, err = cli(["generate", src, "-o", tmp_path / "o.parquet", *teacher], monkeypatch, capsys)
    assert "formats extra" in _one_line_error(code, err) and "pyarrow" in err
    assert fake_openai.calls == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["i.jsonl"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tiny_lm import make_tiny_lm

    return make_tiny_lm(tmp_path_factory.mktemp("tiny") / "lm")


def test_respond_reads_a_dataset_dict_split_and_writes_parquet(tiny, tmp_path):
    from gpt4llm.answers import read_answers
    from gpt4llm.config import LLMConfig
    from gpt4llm.errors import DataError
    from gpt4llm.stages.respond import Config, run

    d = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list([{"instruction": "no", "input": ""}]),
            "test": datasets.Dataset.from_list(
                [{"id": f"q{i}", "instruction": f"Question {i}?", "input": ""} for i in range(3)]
            ),
        }
    )
    d.save_to_disk(str(tmp_path / "dd"))
    model = LLMConfig(model=str(tiny), dtype="float32")

    def cfg(out, **kw):
        return Config(input=tmp_path / "dd", output=out, model=model, max_new_tokens=4, **kw)

    with pytest.raises(DataError, match="needs a split; its splits: train, test"):
        run(cfg(tmp_path / "x.parquet"))
    run(cfg(tmp_path / "r.parquet", split="test"))
    got = read_answers(tmp_path / "r.parquet")  # the reader of eval judge and compare
    assert [a["id"] for a in got.answers] == ["q0", "q1", "q2"]
    assert [a["instruction"] for a in got.answers] == ["Question 0?", "Question 1?", "Question 2?"]
    assert got.model == str(tiny) and all(isinstance(a["turns"][0], str) for a in got.answers)
    # a split's own directory is a Dataset directory: the same records without --split
    run(cfg(tmp_path / "r2.jsonl").model_copy(update={"input": tmp_path / "dd" / "test"}))
    second = [json.loads(x) for x in (tmp_path / "r2.jsonl").read_text().splitlines()]
    assert [r["output"] for r in second] == [a["turns"][0] for a in got.answers]  # greedy


def test_train_sft_on_chat_messages_from_a_parquet_file(tiny, tmp_path):
    from gpt4llm.errors import DataError
    from gpt4llm.records import load_instructions
    from gpt4llm.train.sft import Config, run

    chats = [
        {
            "conversations": [
                {"from": "system", "value": "Be brief."},
                {"from": "human", "value": f"Name number {i}."},
                {"from": "gpt", "value": f"Number {i}."},
                {"from": "human", "value": "And the next?"},
                {"from": "gpt", "value": f"{i + 1}."},
            ]
        }
        for i in range(4)
    ]
    data = _parquet(tmp_path / "chat.parquet", chats)
    recs = load_instructions(data, need_output=True, fields={"messages": "conversations"})
    assert recs[1]["instruction"] == "Be brief.\n\nName number 1."
    assert recs[1]["output"] == "Number 1." and recs[1]["input"] == "" and recs[1]["n_turns"] == 5
    # ShareGPT's key is read without --field too (TRL's maybe_convert_to_chatml renames it)
    plain = load_instructions(data, need_output=True)
    keys = ("id", "instruction", "input", "output", "n_turns")
    assert [[r[k] for k in keys] for r in plain] == [[r[k] for k in keys] for r in recs]
    assert plain[0]["conversations"] == chats[0]["conversations"]  # kept as it was
    bad = _parquet(tmp_path / "bad.parquet", [{"messages": [{"role": "user", "content": 3}]}])
    with pytest.raises(DataError, match=r"bad.parquet:row 1: field 'messages\[0\]': expected"):
        load_instructions(bad)
    nouser = _parquet(
        tmp_path / "nouser.parquet", [{"messages": [{"role": "system", "content": "s"}]}]
    )
    with pytest.raises(DataError, match="row 1: field 'messages': no user turn"):
        load_instructions(nouser)
    summary = run(
        Config(
            model=str(tiny),
            data=[data],
            field={"messages": "conversations"},
            output=tmp_path / "out",
            eval_fraction=0.0,
            lora=False,
            max_steps=1,
            per_device_batch_size=4,
            save_steps=1000,
            precision="fp32",
        )
    )
    assert summary["steps"] == 1 and summary["train_examples"] == 4
    assert (tmp_path / "out" / "model.safetensors").exists()


def test_bad_rows_are_one_line_naming_file_row_and_field(tmp_path, monkeypatch, capsys):
    pq_bad = _parquet(tmp_path / "bad.parquet", [{"instruction": "ok"}, {"instruction": None}])
    code, err = cli(["generate", pq_bad, "-o", tmp_path / "o.jsonl"], monkeypatch, capsys)
    assert f"{pq_bad}:row 2: field 'instruction': is null" in _one_line_error(code, err)

    csv_bad = tmp_path / "bad.csv"
    csv_bad.write_text('instruction,input\nfine,\n"two\nlines",x\nshort\n')
    code, err = cli(["generate", csv_bad, "-o", tmp_path / "o.jsonl"], monkeypatch, capsys)
    assert f"{csv_bad}:row 3 (line 5): 1 cells for the header's 2 columns" in _one_line_error(
        code, err
    )

    csv_ok = tmp_path / "ok.csv"
    csv_ok.write_text("question\nhello\n")
    code, err = cli(
        ["generate", csv_ok, "-o", tmp_path / "o.jsonl", "--field", "instruction=prompt"],
        monkeypatch,
        capsys,
    )
    assert f"{csv_ok}:row 1 (line 2): field 'prompt': missing (--field instruction=prompt)" in (
        _one_line_error(code, err)
    )
    code, err = cli(
        ["generate", csv_ok, "-o", tmp_path / "o.jsonl", "--field", "instuction=question"],
        monkeypatch,
        capsys,
    )
    assert "'instuction' is not one of instruction, input, output, id, messages" in (
        _one_line_error(code, err)
    )

    dup = _parquet(tmp_path / "dup.parquet", [{"id": 7, "instruction": "a"}] * 2)
    code, err = cli(["generate", dup, "-o", tmp_path / "o.jsonl"], monkeypatch, capsys)
    assert f"{dup}:row 2: field 'id': duplicate id '7' (first on row 1)" in (
        _one_line_error(code, err)
    )

    not_parquet = tmp_path / "fake.parquet"
    not_parquet.write_text('{"instruction": "x"}\n')
    code, err = cli(["generate", not_parquet, "-o", tmp_path / "o.jsonl"], monkeypatch, capsys)
    assert f"{not_parquet}: not a readable Parquet file" in _one_line_error(code, err)
    assert not (tmp_path / "o.jsonl").exists()


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """Offline, with one Hub file already in the local cache (the layout huggingface_hub
    writes): hf://datasets/org/qa/data/train.parquet."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = tmp_path / "hub"
    repo = cache / "datasets--org--qa"
    commit = "a" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit / "data"
    snap.mkdir(parents=True)
    _parquet(snap / "train.parquet", [{"q": "From the hub?", "a": "yes"}])
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    return "hf://datasets/org/qa/data/train.parquet"


def test_hub_dataset_offline_reads_the_cache_or_says_so_in_one_line(
    hub_cache, tmp_path, monkeypatch, capsys
):
    from gpt4llm.records import load_instructions

    recs = load_instructions(
        "hf://datasets/org/qa/data/train.parquet", fields={"instruction": "q", "output": "a"}
    )
    assert [(r["instruction"], r["output"], r["id"]) for r in recs] == [
        ("From the hub?", "yes", "train-000000")
    ]
    # Not cached: one line, no retries against a network that is not there.
    out = tmp_path / "o.jsonl"
    for source in ("hf://datasets/org/missing", "hf://datasets/org/qa/other.parquet"):
        code, err = cli(["generate", source, "-o", out], monkeypatch, capsys)
        assert "cannot load from the Hugging Face Hub (HF_HUB_OFFLINE is set)" in (
            _one_line_error(code, err)
        )
    code, err = cli(["generate", "hf://datasets/org", "-o", out], monkeypatch, capsys)
    assert "expected hf://datasets/ORG/NAME" in _one_line_error(code, err)
    assert not out.exists() and os.environ["HF_HUB_OFFLINE"] == "1"


def test_a_pipeline_stage_reads_a_hub_dataset_and_writes_parquet(
    hub_cache, teacher, fake_openai, tmp_path
):
    from gpt4llm.pipeline import run_pipeline

    cfg = tmp_path / "p.yaml"
    cfg.write_text(
        f"stages:\n  gen: {{stage: generate, input: '{hub_cache}', output: '{tmp_path}/g.parquet',"
        f" field: {{instruction: q}}, teacher: {{model: gpt-4, base_url: '{teacher[3]}'}}}}\n"
    )
    run_pipeline(cfg)  # the preflight takes an hf:// input for the Hub's to find
    rows = pq.read_table(tmp_path / "g.parquet").to_pylist()
    assert [(r["instruction"], r["output"]) for r in rows] == [("From the hub?", "A:rom the hub?")]
    assert "q" not in rows[0] and rows[0]["a"] == "yes" and fake_openai.calls == 1


def test_parquet_writer_keeps_mixed_columns_as_json_text(tmp_path):
    from gpt4llm.records import load_jsonl, write_jsonl

    rows = [{"id": "a", "scores": [1, 2], "raw": 3}, {"id": "b", "scores": None, "raw": "x"}]
    assert write_jsonl(tmp_path / "j.parquet", rows) == 2
    back = load_jsonl(tmp_path / "j.parquet")
    assert [r["scores"] for r in back] == [[1, 2], None]  # one type: kept as it is
    assert [r["raw"] for r in back] == ["3", '"x"']  # int and str: JSON text


# Inputs that are not records or answers of other people's datasets, and why (every other path
# input of every stage is a RECORDS input; a new one must be classified here or marked).
NOT_RECORDS = {
    "prompt": "a prompt file",
    "system_prompt": "a prompt file",
    "prompt_template": "a prompt file",
    "prompt_template_no_input": "a prompt file",
    "field_template": "a prompt file",
    "depth_prompt": "a prompt file",
    "input_prompt": "a prompt file",
    "breadth_prompt": "a prompt file",
    "equal_prompt": "a prompt file",
    "aspects_prompt": "a YAML of aspects",
    "template_input": "a prompt template",
    "template_no_input": "a prompt template",
    "judge_system": "a prompt file",
    "judge_panel": "a YAML of judges",
    "criteria": "a YAML of criteria",
    "accelerate_config": "accelerate's YAML",
    "vllm_python": "a program",
    "reward_model": "a model directory",
    ("eval reward", "model"): "a model directory",
    "human_votes": "FastChat's/annotate export's vote files, read in their own format",
    "from_judgments": "FastChat judgment files, read in FastChat's format",
    "from_annotations": "AlpacaEval annotation files, read in AlpacaEval's format",
    "gamed_annotations": "AlpacaEval annotation files, read in AlpacaEval's format",
    "instruction_difficulty": "AlpacaEval's published table, read as AlpacaEval writes it",
    "from_judge": "an eval judge output directory",
    ("eval agreement", "a"): "verdicts: an eval judge output or FastChat/human vote files",
    ("eval agreement", "b"): "verdicts: an eval judge output or FastChat/human vote files",
    ("report", "inputs"): "summaries of our own stages",
    ("report", "paper_rouge"): "the paper's ROUGE table",
    ("report", "analyze"): "an analyze output directory",
}


def _path_inputs(cls) -> list[tuple[str, object, dict]]:
    """(field, annotation, role) of every path input of a config class (or_name ones are
    models and prompt names first)."""
    from gpt4llm.config import field_role

    out = []
    for name, info in cls.model_fields.items():
        marker = field_role(info)
        if marker and marker["role"] == "input" and not marker.get("or_name"):
            out.append((name, info.annotation, marker))
    return out


def _shaped(annotation, path: Path):
    """`path` as the field holds it: one path, a list of them or NAME=PATH."""
    import types
    import typing

    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    origin = typing.get_origin(annotation)
    return {"m": str(path)} if origin is dict else [path] if origin is list else path


def test_every_stage_reading_records_takes_parquet_and_a_field_mapping(tmp_path):
    """Walks the stage table: every path input is a RECORDS input or classified above; every
    stage with one has --field/--split (ReadOptions); and inside the stage's `reading`, each of
    its records inputs given as Parquet is read with the mapping, and nothing else is."""
    from gpt4llm.config import ReadOptions
    from gpt4llm.formats import reading
    from gpt4llm.records import read_json_records
    from gpt4llm.stages import STAGES

    rows = [{"question": "Q?", "answer": "A.", "extra": 1}]
    other = _parquet(tmp_path / "not-an-input.parquet", rows)
    checked = 0
    for spec in STAGES:
        cls = spec.config_class()
        records = {}
        for name, annotation, marker in _path_inputs(cls):
            if marker.get("records"):
                path = _parquet(tmp_path / f"{spec.key}-{name}.parquet", rows)
                records[name] = (path, _shaped(annotation, path))
            else:
                assert (spec.command, name) in NOT_RECORDS or name in NOT_RECORDS, (
                    f"{spec.command}: input {name!r} is neither RECORDS nor in NOT_RECORDS"
                )
        if not records:
            assert not issubclass(cls, ReadOptions), f"{spec.command}: --field with no records"
            continue
        assert issubclass(cls, ReadOptions), f"{spec.command}: records without --field/--split"
        required = {n: tmp_path / n for n, i in cls.model_fields.items() if i.is_required()}
        config = cls.model_construct(
            **{**required, **{name: value for name, (_, value) in records.items()}},
            field={"instruction": "question", "output": "answer"},
            split=None,
        )
        with reading(config):
            for name, (path, _) in records.items():
                ((_, got),) = read_json_records(path)
                assert got == {"instruction": "Q?", "output": "A.", "extra": 1}, (
                    spec.command,
                    name,
                )
                checked += 1
            assert read_json_records(other)[0][1] == rows[0]  # not the stage's input: as it is
        assert read_json_records(path)[0][1] == rows[0]  # the stage is over
    assert checked >= 25  # every records input of every stage (31 when written)


def test_eval_rouge_reads_parquet_predictions_with_a_field_mapping(tmp_path, monkeypatch, capsys):
    """Through the CLI: the predictions are someone else's Parquet (`answer`, `qid`), the
    references our JSONL; one --field maps the first and leaves the second (which has our
    fields) as it is. The scores equal those of the same data given in our format."""
    refs = [
        {"id": "a", "instruction": "Say hi.", "input": "", "output": "hello there my friend"},
        {"id": "b", "instruction": "Count.", "input": "", "output": "one two three"},
    ]
    ref = write_jsonl(tmp_path / "ref.jsonl", refs)
    theirs = [{"qid": "b", "answer": "one two four"}, {"qid": "a", "answer": "hello friend"}]
    pred = _parquet(tmp_path / "pred.parquet", theirs)
    ours = write_jsonl(
        tmp_path / "pred.jsonl", [{"id": r["qid"], "output": r["answer"]} for r in theirs]
    )
    args = [
        "eval",
        "rouge",
        pred,
        ref,
        "-o",
        tmp_path / "mapped",
        "--field",
        "id=qid,output=answer",
    ]
    code, err = cli(args, monkeypatch, capsys)
    assert code == 0, err
    code, err = cli(["eval", "rouge", ours, ref, "-o", tmp_path / "plain"], monkeypatch, capsys)
    assert code == 0, err
    mapped, plain = (
        json.loads((tmp_path / d / "summary.json").read_text()) for d in ("mapped", "plain")
    )
    assert mapped["all"] == plain["all"] and mapped["n"] == 2 and 0 < mapped["all"]["rougeL"] < 1

    # without the mapping the same file is refused in one line, naming the row and field
    code, err = cli(["eval", "rouge", pred, ref, "-o", tmp_path / "bad"], monkeypatch, capsys)
    assert f"{pred}:row 1" in _one_line_error(code, err)


def test_a_launched_trainer_process_reads_with_the_parents_field_mapping(tmp_path):
    """What `--launcher accelerate` runs in each process (`module_main` on launch_config.yaml)
    reads the data with the same --field/--split as the parent would."""
    import yaml

    from gpt4llm.records import read_json_records
    from gpt4llm.train.common import module_main
    from gpt4llm.train.reward import Config

    data = _parquet(tmp_path / "pairs.parquet", [{"q": "Hi?", "good": "Hello.", "bad": "No."}])
    cfg = tmp_path / "launch_config.yaml"
    fields = {"user_input": "q", "completion_a": "good", "completion_b": "bad"}
    cfg.write_text(
        yaml.safe_dump({"data": str(data), "output": str(tmp_path / "o"), "field": fields})
    )
    seen = []
    module_main(
        Config,
        lambda config: seen.extend(read_json_records(config.data)),
        "t",
        ["--config", str(cfg)],
    )
    assert [r for _, r in seen] == [
        {"user_input": "Hi?", "completion_a": "Hello.", "completion_b": "No."}
    ]


def test_audit_reads_mapped_parquet_and_writes_parquet(tmp_path, monkeypatch, capsys):
    rows = [
        {"q": "Name a fruit.", "a": "An apple."},
        {"q": "Name a colour.", "a": "N/A"},  # dropped: a non-answer
    ]
    data = _parquet(tmp_path / "data.parquet", rows)
    out = tmp_path / "clean.parquet"
    args = ["audit", data, "-o", out, "--field", "instruction=q,output=a"]
    code, err = cli(args, monkeypatch, capsys)
    assert code == 0, err
    kept = pq.read_table(out).to_pylist()
    # the kept record in our fields (as every stage's output), nothing else of it changed
    assert kept == [{"instruction": "Name a fruit.", "output": "An apple."}]
    assert (tmp_path / "clean.parquet.manifest.json").exists()


# --------------------------------------------------------------------------- datasets output
def test_dataset_dir_writer_round_trips_mixed_columns_and_no_records(tmp_path):
    from gpt4llm.records import load_jsonl, write_jsonl

    rows = [{"id": "a", "scores": [1, 2], "raw": 3}, {"id": "b", "scores": None, "raw": "x"}]
    out = tmp_path / "j.hf"
    assert write_jsonl(out, rows) == 2
    back = load_jsonl(out)  # our reader
    assert [r["scores"] for r in back] == [[1, 2], None]  # one type: kept as it is
    assert [r["raw"] for r in back] == ["3", '"x"']  # int and str: JSON text, as in Parquet
    assert datasets.load_from_disk(str(out)).to_list() == back
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.hf"]  # no temporary left
    assert write_jsonl(out, []) == 0  # replaced by an empty one both readers load
    assert load_jsonl(out) == [] and len(datasets.load_from_disk(str(out))) == 0


def test_dataset_dir_replace_is_atomic(tmp_path, monkeypatch):
    from gpt4llm.records import load_jsonl, write_jsonl

    out = tmp_path / "d.hf"
    write_jsonl(out, [{"instruction": "old"}])

    def broken(self, path, **kw):
        (Path(path) / "data-00000-of-00001.arrow").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(datasets.Dataset, "save_to_disk", broken)
    with pytest.raises(OSError, match="disk full"):
        write_jsonl(out, [{"instruction": "new"}])
    assert load_jsonl(out) == [{"instruction": "old"}]  # the old directory, intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.hf"]
    monkeypatch.undo()
    write_jsonl(out, [{"instruction": "new"}, {"instruction": "2"}])
    assert [r["instruction"] for r in load_jsonl(out)] == ["new", "2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.hf"]


def test_generate_writes_a_datasets_directory_a_second_stage_reads(
    teacher, fake_openai, tmp_path, monkeypatch, capsys
):
    src = write_jsonl(tmp_path / "i.jsonl", [{"instruction": "Say hi"}, {"instruction": "Add"}])
    out = tmp_path / "sft.hf"
    for _ in range(2):  # the second run replaces the first's directory
        code, err = cli(["generate", src, "-o", out, *teacher], monkeypatch, capsys)
        assert code == 0, err
    rows = datasets.load_from_disk(str(out)).to_list()
    assert [r["instruction"] for r in rows] == ["Say hi", "Add"]
    assert all(r["output"].startswith("A:") for r in rows) and fake_openai.calls == 2
    assert (tmp_path / "sft.hf.manifest.json").exists()  # side files beside, not inside
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith(".arrow")) == [
        "dataset_info.json",
        "state.json",
    ]
    assert not list(tmp_path.glob(".sft.hf.*"))

    again = tmp_path / "again.jsonl"
    code, err = cli(["generate", out, "-o", again, *teacher], monkeypatch, capsys)
    assert code == 0, err
    assert [json.loads(x)["instruction"] for x in again.read_text().splitlines()] == [
        "Say hi",
        "Add",
    ]
    assert fake_openai.calls == 2  # the same prompts: answered from the request cache


def test_dataset_output_refused_before_the_first_call(
    teacher, fake_openai, tmp_path, monkeypatch, capsys
):
    import importlib.util

    src = write_jsonl(tmp_path / "i.jsonl", [{"instruction": "x"}])
    (tmp_path / "file.hf").write_text("mine")
    (tmp_path / "other.hf").mkdir()
    (tmp_path / "other.hf" / "notes.txt").write_text("mine")
    (tmp_path / "empty.hf").mkdir()
    for name, said in (
        ("file.hf", "is a file; a .hf output is written as a datasets directory"),
        ("other.hf", "not a datasets directory"),
        ("empty.hf", "not a datasets directory"),
    ):
        code, err = cli(["generate", src, "-o", tmp_path / name, *teacher], monkeypatch, capsys)
        assert said in _one_line_error(code, err)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "datasets" else real(n, *a)
    )
    code, err = cli(["generate", src, "-o", tmp_path / "o.hf", *teacher], monkeypatch, capsys)
    assert "formats extra" in _one_line_error(code, err) and "datasets" in err
    assert fake_openai.calls == 0
    names = ["empty.hf", "file.hf", "i.jsonl", "other.hf"]
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    assert (tmp_path / "other.hf" / "notes.txt").read_text() == "mine"
    assert not list((tmp_path / "empty.hf").iterdir())


def test_only_a_datasets_directory_named_hf_has_its_side_files_beside_it(tmp_path):
    from gpt4llm.outputs import failed_path
    from gpt4llm.provenance import manifest_path
    from gpt4llm.records import write_jsonl

    model = tmp_path / "student.hf"  # a trainer's output directory, named so by a user
    model.mkdir()
    (model / "config.json").write_text("{}")
    assert manifest_path(model) == model / "manifest.json"
    assert failed_path(model) == model / "failed.jsonl"
    data = tmp_path / "data.hf"
    write_jsonl(data, [{"instruction": "x"}])
    assert manifest_path(data) == tmp_path / "data.hf.manifest.json"
    assert failed_path(data) == tmp_path / "data.hf.failed.jsonl"


def test_a_pipeline_stage_reruns_when_its_datasets_directory_input_changes(
    teacher, fake_openai, tmp_path
):
    from gpt4llm.pipeline import run_pipeline
    from gpt4llm.records import load_jsonl, write_jsonl

    src = tmp_path / "in.hf"
    write_jsonl(src, [{"instruction": "first"}])
    cfg = tmp_path / "p.yaml"
    cfg.write_text(
        f"stages:\n  gen: {{stage: generate, input: '{src}', output: '{tmp_path}/g.jsonl',"
        f" teacher: {{model: gpt-4, base_url: '{teacher[3]}'}}}}\n"
    )
    run_pipeline(cfg)
    manifest = json.loads((tmp_path / "g.jsonl.manifest.json").read_text())
    assert list(manifest["inputs"]) == [str(src)]  # the directory is hashed like a file
    assert [s["status"] for s in run_pipeline(cfg)] == ["skipped"]  # unchanged: not rerun
    write_jsonl(src, [{"instruction": "second"}])
    run_pipeline(cfg)
    assert [r["instruction"] for r in load_jsonl(tmp_path / "g.jsonl")] == ["second"]
    assert fake_openai.calls == 2
