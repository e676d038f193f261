"""eval leaderboard --from-judgments against FastChat's own show_result.py (tests/data/fastchat,
copied unchanged): on FastChat-format judgment files made here -- errors, ties, games that
disagree, two turns, a -1 score -- our tables equal the DataFrames show_result prints, in
pairwise-baseline, pairwise-all and single mode."""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
from pathlib import Path

import pytest

from gpt4llm.evaluate.leaderboard import Config, run

ORACLE = Path(__file__).parents[2] / "data" / "fastchat" / "show_result.py"
MODELS = ["gpt-3.5-turbo", "vicuna-13b", "alpaca-13b", "llama-13b"]
SKILL = {"gpt-3.5-turbo": 2.0, "vicuna-13b": 1.5, "alpaca-13b": 0.5, "llama-13b": 0.0}


def make_files(tmp_path: Path) -> tuple[Path, Path]:
    rng = random.Random(7)
    pair, single = [], []
    for qid in range(81, 121):
        for turn in (1, 2):
            for i, m1 in enumerate(MODELS):
                score = rng.choice(
                    [-1] + [max(1, min(10, round(3 + 2 * SKILL[m1] + rng.gauss(0, 2))))] * 12
                )
                single.append(
                    {
                        "question_id": qid,
                        "model": m1,
                        "judge": ["gpt-4", "single-v1"],
                        "user_prompt": "...",
                        "judgment": f"Rating: [[{score}]]",
                        "score": score,
                        "turn": turn,
                        "tstamp": 1.0,
                    }
                )
                for m2 in MODELS[i + 1 :]:

                    def game(m1: str = m1, m2: str = m2) -> str:
                        d = SKILL[m1] - SKILL[m2] + rng.gauss(0, 1)
                        return "model_1" if d > 0.4 else "model_2" if d < -0.4 else "tie"

                    g1, g2 = game(), game()
                    if rng.random() < 0.03:
                        g1 = "error"
                    pair.append(
                        {
                            "question_id": qid,
                            "model_1": m1,
                            "model_2": m2,
                            "g1_winner": g1,
                            "g2_winner": g2,
                            "judge": ["gpt-4", "pair-v2"],
                            "g1_user_prompt": "...",
                            "g1_judgment": "[[A]]",
                            "g2_user_prompt": "...",
                            "g2_judgment": "[[B]]",
                            "turn": turn,
                            "tstamp": 1.0,
                        }
                    )
    p, s = tmp_path / "gpt-4_pair.jsonl", tmp_path / "gpt-4_single.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in pair))
    s.write_text("".join(json.dumps(r) + "\n" for r in single))
    return p, s


def show_result(mode: str, path: Path, baseline: str | None = None) -> list:
    """The DataFrames FastChat's show_result.py prints for `mode` on `path`."""
    pytest.importorskip("pandas")
    spec = importlib.util.spec_from_file_location("fastchat_show_result", ORACLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    printed: list = []
    module.print = lambda *a, **k: printed.extend(x for x in a if not isinstance(x, str))
    args = argparse.Namespace(
        bench_name="mt_bench",
        input_file=str(path),
        judge_model="gpt-4",
        baseline_model=baseline,
        model_list=None,
        mode=mode,
    )
    (module.display_result_single if mode == "single" else module.display_result_pairwise)(args)
    return printed


@pytest.mark.parametrize("baseline", ["gpt-3.5-turbo", None])
def test_pairwise_tables_equal_show_result(tmp_path, baseline):
    pair, single = make_files(tmp_path)
    s = run(
        Config(
            from_judgments=[pair, single], baseline=baseline, output=tmp_path / "o", bootstrap=50
        )
    )
    ours = s["fastchat"]["pair"]
    [theirs] = show_result("pairwise-baseline" if baseline else "pairwise-all", pair, baseline)
    assert [r["model"] for r in ours] == list(theirs.index)  # the same ranking
    for r in ours:
        row = theirs.loc[r["model"]]
        assert (r["win"], r["loss"], r["tie"]) == (row["win"], row["loss"], row["tie"])
        for k in ("win_rate", "loss_rate", "win_rate_adjusted"):
            assert r[k] == pytest.approx(row[k], abs=1e-12)
    assert s["fastchat"]["pair_mode"] == ("pairwise-baseline" if baseline else "pairwise-all")
    # the ratings rank the models as their skill; the baseline anchored at 1000
    ranked = [r["model"] for r in s["models"]]
    assert ranked == MODELS
    if baseline:
        assert s["models"][0]["rating"] == 1000.0


def test_single_scores_equal_show_result(tmp_path):
    pair, single = make_files(tmp_path)
    s = run(Config(from_judgments=[single, pair], output=tmp_path / "o", bootstrap=50))
    first, second, average = show_result("single", single)
    ours = s["fastchat"]["single"]
    assert list(ours) == list(average.index)  # the same ranking
    for m, got in ours.items():
        assert got["score"] == pytest.approx(average.loc[m, "score"], abs=1e-12)
        assert got["turn_1"] == pytest.approx(first.loc[(m, 1), "score"], abs=1e-12)
        assert got["turn_2"] == pytest.approx(second.loc[(m, 2), "score"], abs=1e-12)
    # the single scores beside the ratings, and their rank correlation
    assert s["single"]["scores"] == {m: v["score"] for m, v in ours.items()}
    assert -1.0 <= s["single"]["spearman"] <= 1.0 and s["single"]["n_models"] == 4
