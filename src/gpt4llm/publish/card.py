"""The dataset or model card of `gpt4llm publish`, written from our manifests alone.

What a reader of a synthetic data set or a distilled model asks is answered from the
`manifest.json` the stage wrote and the manifests of its inputs (the lineage): which teacher
(and the model id the endpoint reported, where the summary recorded it), which prompts (by
sha256), which sampling settings, how many items, how many failed, what it cost, what the audit
and decontamination found, the base model and training settings, the evaluation results (the
Hub's `model-index`), the license carried over from the data it was made from (the GPT-4-LLM
and Alpaca data are CC BY-NC 4.0), and the command and config that reproduce it.

The metadata is huggingface_hub's own `DatasetCardData` / `ModelCardData` (with `EvalResult`s),
so the Hub reads it as it reads any card.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpt4llm import __version__
from gpt4llm.config_yaml import settings_yaml
from gpt4llm.provenance import TRACKING_FIELDS, manifest_path

# Our license names (gpt4llm.data.CATALOG) -> the Hub's identifiers, least restrictive first.
HUB_LICENSES = {
    "Apache-2.0": "apache-2.0",
    "MIT": "mit",
    "CC BY 4.0": "cc-by-4.0",
    "CC BY-NC 4.0": "cc-by-nc-4.0",
}
SAMPLING = ("temperature", "top_p", "max_tokens", "n", "seed", "stop", "lang", "num_samples")
PROMPT_FIELDS = ("system_prompt", "prompt_template", "prompt_template_no_input", "field_template")
PROMPT_FIELDS += ("prompt", "reminder", "probe")
# The packaged prompt a stage uses when the option is unset.
DEFAULT_PROMPTS = {
    "generate": {
        "system_prompt": "teacher_system.txt",
        "prompt_template": "teacher_input.txt",
        "prompt_template_no_input": "teacher_no_input.txt",
    },
    "translate": {
        "system_prompt": "translate_system.txt",
        "prompt_template": "translate_record.txt",
        "field_template": "translate_field.txt",
    },
}
TRAINING = ("model", "epochs", "max_steps", "learning_rate", "lr_scheduler", "warmup_ratio")
TRAINING += ("per_device_batch_size", "gradient_accumulation_steps", "max_seq_len", "lora")
TRAINING += ("lora_r", "lora_alpha", "lora_dropout", "precision", "seed", "beta", "loss_type")
SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"))


def read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def lineage(manifest: dict[str, Any], depth: int = 8) -> list[dict[str, Any]]:
    """The manifests of the inputs, and of theirs, nearest first (each once)."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    todo = [(p, 1) for p in manifest.get("inputs") or {}]
    while todo:
        path, level = todo.pop(0)
        mpath = manifest_path(path)
        if level > depth or str(mpath) in seen or not mpath.is_file():
            continue
        seen.add(str(mpath))
        upstream = read_manifest(mpath)
        if upstream is not None:
            out.append({**upstream, "_output": path})
            todo += [(p, level + 1) for p in upstream.get("inputs") or {}]
    return out


def carried_licenses(manifests: list[dict[str, Any]]) -> dict[str, str]:
    """{input file: its license} for every input of the lineage that is a published data set
    we know (gpt4llm.data.CATALOG, by its file name or sha256)."""
    from gpt4llm.data import CATALOG

    by_name = {d.filename: d.license for d in CATALOG.values() if d.license}
    by_hash = {d.sha256: d.license for d in CATALOG.values() if d.license and d.sha256}
    found: dict[str, str] = {}
    for m in manifests:
        for path, digest in (m.get("inputs") or {}).items():
            name = Path(path).name
            lic = by_hash.get(digest) or by_name.get(name)
            if lic:
                found[path] = lic
    return found


def choose_license(carried: dict[str, str], given: str | None) -> str:
    """The Hub license id: the one given, else the most restrictive carried, else `other`."""
    if given:
        return given
    ranked = sorted(
        {HUB_LICENSES.get(lic, "other") for lic in carried.values()},
        key=lambda x: list(HUB_LICENSES.values()).index(x) if x in HUB_LICENSES.values() else 99,
    )
    return ranked[-1] if ranked else "other"


def prompt_hashes(stage: str, config: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(option, the prompt file or built-in name, sha256 of its text) for each prompt used."""
    from gpt4llm.prompts import load_prompt

    out = []
    defaults = DEFAULT_PROMPTS.get(stage, {})
    for key in PROMPT_FIELDS:
        if key not in config and key not in defaults:
            continue
        value = config.get(key) or defaults.get(key)
        if not value:
            continue
        try:
            text = load_prompt(value)
        except Exception:  # noqa: BLE001 - a prompt that moved since: named, not hashed
            out.append((key, str(value), "(not found here)"))
            continue
        shown = str(value) if config.get(key) else f"{value} (built in, gpt4llm)"
        out.append((key, shown, hashlib.sha256(text.encode("utf-8")).hexdigest()))
    return out


def _table(rows: list[tuple[Any, ...]], head: tuple[str, ...]) -> str:
    if not rows:
        return ""
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text.replace("|", "\\|").replace("\n", " ")


def _models(config: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(role, model, endpoint host) of every model connection of a config (teacher, rater...)."""
    from urllib.parse import urlsplit

    out = []
    for key, value in config.items():
        if isinstance(value, dict) and "model" in value and "backend" in value:
            urls = value.get("base_url") or []
            urls = [urls] if isinstance(urls, str) else urls
            hosts = ", ".join(urlsplit(u).hostname or "?" for u in urls) or "OpenAI (default)"
            if value.get("backend") == "local" or value["model"] == "embedded":
                hosts = "local"
            model = str(value["model"])
            shown = f"{Path(model).name} (local)" if Path(model).expanduser().exists() else model
            out.append((key, shown, hosts))
    return out


def _summary_rows(summary: dict[str, Any]) -> list[tuple[str, Any]]:
    """A summary's values for a reader: numbers (nested ones by dotted key) and short texts;
    local paths (this machine's, meaningless on the Hub) left out."""
    from gpt4llm.tracking import numbers

    rows: list[tuple[str, Any]] = []
    for key, value in summary.items():
        if key in ("status", "cost_known") or isinstance(value, str) and "/" in value:
            continue
        if isinstance(value, (dict, list)) and value and key != "reported_models":
            rows += [
                (f"{key}.{k}", int(v) if v.is_integer() else v) for k, v in numbers(value).items()
            ]
        elif value is not None and value != [] and value != {}:
            rows.append((key, value))
    return rows


def how_it_was_made(manifest: dict[str, Any], title: str = "How it was made") -> str:
    """One manifest as a card section: models, prompts, sampling, counts and cost, config."""
    stage, config = manifest.get("stage", "?"), manifest.get("config") or {}
    parts = [f"## {title}: `gpt4llm {stage}`\n"]
    models = _models(config)
    reported = (manifest.get("summary") or {}).get("reported_models")
    if models:
        parts.append(_table(models, ("role", "model", "endpoint")))
        said = ", ".join(reported) if isinstance(reported, list) else reported
        parts.append(f"Model id the endpoint reported: {said or 'not recorded'}.\n")
    prompts = prompt_hashes(stage, config)
    if prompts:
        parts.append("Prompts:\n\n" + _table(prompts, ("option", "prompt", "sha256")))
    sampling = [(k, config[k]) for k in SAMPLING if k in config and config[k] is not None]
    for _, llm in ((k, v) for k, v in config.items() if isinstance(v, dict) and "model" in v):
        sampling += [(f"{_}.{k}", llm[k]) for k in SAMPLING if llm.get(k) is not None]
    if sampling:
        parts.append("Sampling:\n\n" + _table(sampling, ("setting", "value")))
    rows = _summary_rows(manifest.get("summary") or {})
    if rows:
        parts.append("Counts, failures and cost:\n\n" + _table(rows, ("what", "value")))
    return "\n".join(parts)


def reproduce(manifest: dict[str, Any]) -> str:
    config = {k: v for k, v in (manifest.get("config") or {}).items() if k not in TRACKING_FIELDS}
    return (
        "## Reproduce\n\n"
        f"Made with gpt4llm {manifest.get('gpt4llm_version', '?')} (this card: {__version__}),"
        f" Python {manifest.get('python', '?')}, on {manifest.get('finished_at', '?')}:\n\n"
        f"```\n{manifest.get('command') or '?'}\n```\n\n"
        "Its settings (`gpt4llm " + str(manifest.get("stage")) + " --config settings.yaml`):\n\n"
        f"```yaml\n{settings_yaml(config)}```\n"
    )


def inputs_section(manifest: dict[str, Any]) -> str:
    rows = [(Path(p).name, d) for p, d in (manifest.get("inputs") or {}).items()]
    return "## Inputs\n\n" + _table(rows, ("file", "sha256")) if rows else ""


def license_section(license_id: str, carried: dict[str, str], teachers: list[str]) -> str:
    lines = [f"## License\n\n`{license_id}`."]
    if carried:
        lines.append("Carried over from the data it was made from:\n")
        lines += [f"- `{Path(p).name}`: {lic}" for p, lic in carried.items()]
    else:
        lines.append("No input is a data set of known license: check it before sharing.")
    if any(t.startswith(("gpt-", "o1", "o3", "o4")) for t in teachers):
        lines.append(
            "\nAnswers written by an OpenAI model: their use is also bound by OpenAI's terms of"
            " use (the GPT-4-LLM data is for research use only)."
        )
    return "\n".join(lines) + "\n"


def findings(manifests: list[dict[str, Any]]) -> str:
    """What the audit (quality, duplicates, decontamination) of this data or its inputs found."""
    audits = [m for m in manifests if m.get("stage") == "audit"]
    if not audits:
        return "## Audit and decontamination\n\nNo `gpt4llm audit` ran on this data.\n"
    parts = ["## Audit and decontamination\n"]
    for m in audits:
        rows = _summary_rows(m.get("summary") or {})
        against = (m.get("config") or {}).get("eval_set")
        if against:
            parts.append(f"Checked against: {_cell(against)}.\n")
        parts.append(_table(rows, ("finding", "value")))
    return "\n".join(parts)


def size_category(n: int) -> str:
    return next((name for limit, name in SIZES if n < limit), "n>1M")


# --------------------------------------------------------------------------- the cards
def build_card(config: Any, manifest: dict[str, Any], kind: str) -> str:
    """The card's text (YAML metadata + markdown) for a `dataset` or a `model`."""
    upstream = lineage(manifest)
    if kind == "model":  # a model trained from one of ours: its making too (the SFT data...)
        upstream += base_lineage(str((manifest.get("config") or {}).get("model") or ""))
    carried = carried_licenses([manifest, *upstream])
    license_id = choose_license(carried, config.license)
    teachers = [
        m for every in (manifest, *upstream) for _, m, _ in _models(every.get("config") or {})
    ]
    facts = Facts(config, manifest, upstream, license_id, carried, teachers)
    return dataset_card(facts) if kind == "dataset" else model_card(facts)


@dataclass
class Facts:
    """What a card is written from: the publish config, the manifest, its lineage, the license
    chosen and those carried over, the teachers of the lineage."""

    config: Any
    manifest: dict[str, Any]
    upstream: list[dict[str, Any]]
    license_id: str
    carried: dict[str, str]
    teachers: list[str]


def _render(card_class: Any, data: Any, body: list[str]) -> str:
    template = "---\n{{ card_data }}\n---\n\n" + "\n".join(part for part in body if part)
    return str(card_class.from_template(data, template_str=template))


def _teachers(teachers: list[str]) -> str:
    names = sorted(set(teachers))
    return ("teachers: " if len(names) > 1 else "teacher: ") + (", ".join(names) or "none")


def count_records(path: Path) -> int:
    """Records in a JSONL file (its non-blank lines) or a JSON array."""
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return 0
        return len(data) if isinstance(data, list) else 1
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


def _languages(config: Any, manifests: list[dict[str, Any]]) -> list[str]:
    if config.language:
        return list(config.language)
    langs = [
        (m.get("config") or {}).get("lang") for m in manifests if m.get("stage") == "translate"
    ]
    return sorted({"en", *[lang for lang in langs if lang]})


def dataset_card(facts: Facts) -> str:
    config, manifest, upstream = facts.config, facts.manifest, facts.upstream
    from huggingface_hub import DatasetCard, DatasetCardData

    stage = manifest.get("stage", "?")
    n = count_records(config.path)
    data = DatasetCardData(
        license=facts.license_id,
        language=_languages(config, [manifest, *upstream]),
        task_categories=["text-generation"],
        tags=["gpt4llm", "synthetic", "instruction-tuning", stage.replace(" ", "-")],
        size_categories=[size_category(n)],
        pretty_name=config.repo.split("/")[-1],
        configs=[
            {"config_name": "default", "data_files": [{"split": "train", "path": config.path.name}]}
        ],
    )
    body = [
        f"# {config.repo.split('/')[-1]}\n",
        f"`{config.path.name}`: {n} records by `gpt4llm {stage}` ({_teachers(facts.teachers)}).\n",
        "" if stage == "audit" else how_it_was_made(manifest),  # its findings: next section
        findings([manifest, *upstream]),
        *[how_it_was_made(m, f"Its input `{Path(m['_output']).name}`") for m in upstream],
        inputs_section(manifest),
        license_section(facts.license_id, facts.carried, facts.teachers),
        reproduce(manifest),
    ]
    return _render(DatasetCard, data, body)


def eval_results(paths: list[Path], model_name: str) -> list[Any]:
    """The Hub's EvalResult for each evaluation output given (`--eval`): ROUGE-1/2/L of
    eval rouge over every example, and the headline numbers of the others' summaries."""
    from huggingface_hub import EvalResult

    out = []
    for path in paths:
        summary_file = path / "summary.json" if path.is_dir() else path
        m = read_manifest(manifest_path(path)) or {}
        try:
            summary = json.loads(summary_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        stage = m.get("stage") or "eval"
        cfg = m.get("config") or {}
        refs = cfg.get("references") or cfg.get("input") or cfg.get("data")
        refs = refs[0] if isinstance(refs, list) and refs else refs
        dataset = Path(str(refs)).stem if refs else path.name
        for metric, value in _headline(stage, summary).items():
            out.append(
                EvalResult(
                    task_type="text-generation",
                    dataset_type=dataset,
                    dataset_name=dataset,
                    metric_type=metric,
                    metric_value=round(float(value), 4),
                    metric_name=f"{metric} (gpt4llm {stage})",
                )
            )
    return out


def _headline(stage: str, summary: dict[str, Any]) -> dict[str, float]:
    from gpt4llm.tracking import numbers

    if stage == "eval rouge":
        return {
            k: v
            for k, v in (summary.get("all") or {}).items()
            if k.startswith("rouge") and v is not None
        }
    flat = numbers(summary)
    wanted = ("win_rate", "accuracy", "mean_score")
    return {k: v for k, v in flat.items() if any(w in k.split(".")[-1] for w in wanted)}


def model_card(facts: Facts) -> str:
    config, manifest, upstream = facts.config, facts.manifest, facts.upstream
    from huggingface_hub import ModelCard, ModelCardData

    stage = manifest.get("stage", "?")
    settings = manifest.get("config") or {}
    base = str(settings.get("model") or "")
    adapter = (config.path / "adapter_config.json").is_file()
    name = config.repo.split("/")[-1]
    data = ModelCardData(
        model_name=name,
        license=facts.license_id,
        language=_languages(config, upstream),
        library_name="peft" if adapter else "transformers",
        pipeline_tag="text-classification" if stage == "train reward" else "text-generation",
        tags=["gpt4llm", stage.replace(" ", "-"), "trl" if stage != "train sft" else "sft"],
        base_model=hub_base_model(base),
        eval_results=eval_results(list(config.eval), name) or None,
    )
    training = [(k, settings[k]) for k in TRAINING if k in settings and settings[k] is not None]
    body = [
        f"# {name}\n",
        f"{'A LoRA adapter' if adapter else 'A model'} by `gpt4llm {stage}` from `{base}`.\n",
        "## Training settings\n\n" + _table(training, ("setting", "value")),
        "## Training results\n\n"
        + _table(_summary_rows(manifest.get("summary") or {}), ("what", "value")),
        _evaluation(data),
        inputs_section(manifest),
        findings(upstream),
        *[how_it_was_made(m, _made_of(m)) for m in upstream],
        license_section(facts.license_id, facts.carried, facts.teachers),
        reproduce(manifest),
    ]
    return _render(ModelCard, data, body)


def base_lineage(base: str) -> list[dict[str, Any]]:
    """The manifest of a local base model we trained, and its lineage."""
    path = Path(base).expanduser() if base and base != "embedded" else None
    found = read_manifest(path / "manifest.json") if path and path.is_dir() else None
    return [] if found is None else [{**found, "_output": base}, *lineage(found)]


def hub_base_model(base: str, hops: int = 8) -> str | None:
    """The Hub id a model was trained from: the embedded model is google/gemma-3-270m; a local
    model we trained is followed to its own base through its manifest; another local path has
    none."""
    for _ in range(hops):
        if base == "embedded":
            return "google/gemma-3-270m"
        if not base or not Path(base).expanduser().exists():
            return base or None
        upstream = read_manifest(Path(base).expanduser() / "manifest.json")
        if upstream is None:
            return None
        base = str((upstream.get("config") or {}).get("model") or "")
    return None


def _made_of(m: dict[str, Any]) -> str:
    what = "Its base model" if str(m.get("stage")).startswith("train") else "Its data"
    return f"{what} `{Path(m['_output']).name}`"


def _evaluation(data: Any) -> str:
    rows = [(r.dataset_name, r.metric_name, r.metric_value) for r in data.eval_results or []]
    if not rows:
        return "## Evaluation\n\nNo evaluation given (`--eval DIR`).\n"
    return "## Evaluation\n\n" + _table(rows, ("data", "metric", "value"))
