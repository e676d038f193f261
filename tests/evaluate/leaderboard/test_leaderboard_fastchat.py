"""eval leaderboard --from-judgments against FastChat's own show_result.py (tests/data/fastchat,
copied unchanged): on FastChat-format judgment files made here -- errors, ties, games that
disagree, two turns, a -1 score -- and on excerpts of real MT-bench judgment files made by GPT-4
in other people's FastChat runs (tests/data/fastchat/judgments, README there), our tables equal
the DataFrames show_result prints, in pairwise-baseline, pairwise-all and single mode."""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
from pathlib import Path

import pytest

from gpt4llm.evaluate.leaderboard import Config, run

ORACLE = Path(__file__).parents[2] / "data" / "fastchat" / "show_result.py"
REAL = ORACLE.parent / "judgments"
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


def assert_pair_table(ours: list[dict], path: Path, baseline: str | None) -> None:
    """Our pair table equals show_result's: the ranking, each count and each rate."""
    [theirs] = show_result("pairwise-baseline" if baseline else "pairwise-all", path, baseline)
    assert [r["model"] for r in ours] == list(theirs.index)  # the same ranking
    for r in ours:
        row = theirs.loc[r["model"]]
        assert (r["win"], r["loss"], r["tie"]) == (row["win"], row["loss"], row["tie"])
        for k in ("win_rate", "loss_rate", "win_rate_adjusted"):
            assert r[k] == pytest.approx(row[k], abs=1e-12)


def assert_single_table(ours: dict[str, dict], path: Path) -> None:
    """Our single scores equal show_result's: the ranking, turn 1, turn 2 and the average."""
    first, second, average = show_result("single", path)
    assert list(ours) == list(average.index)  # the same ranking
    for m, got in ours.items():
        assert got["score"] == pytest.approx(average.loc[m, "score"], abs=1e-12)
        assert got["turn_1"] == pytest.approx(first.loc[(m, 1), "score"], abs=1e-12)
        if (m, 2) in second.index:
            assert got["turn_2"] == pytest.approx(second.loc[(m, 2), "score"], abs=1e-12)
        else:
            assert got["turn_2"] is None


@pytest.mark.parametrize("baseline", ["gpt-3.5-turbo", None])
def test_pairwise_tables_equal_show_result(tmp_path, baseline):
    pair, single = make_files(tmp_path)
    s = run(
        Config(
            from_judgments=[pair, single], baseline=baseline, output=tmp_path / "o", bootstrap=50
        )
    )
    assert_pair_table(s["fastchat"]["pair"], pair, baseline)
    assert s["fastchat"]["pair_mode"] == ("pairwise-baseline" if baseline else "pairwise-all")
    # the ratings rank the models as their skill; the baseline anchored at 1000
    ranked = [r["model"] for r in s["models"]]
    assert ranked == MODELS
    if baseline:
        assert s["models"][0]["rating"] == 1000.0


def test_single_scores_equal_show_result(tmp_path):
    pair, single = make_files(tmp_path)
    s = run(Config(from_judgments=[single, pair], output=tmp_path / "o", bootstrap=50))
    ours = s["fastchat"]["single"]
    assert_single_table(ours, single)
    # the single scores beside the ratings, and their rank correlation
    assert s["single"]["scores"] == {m: v["score"] for m, v in ours.items()}
    assert -1.0 <= s["single"]["spearman"] <= 1.0 and s["single"]["n_models"] == 4


@pytest.mark.parametrize("name", ["instructlab_gpt-4_single.jsonl", "wgm20_gpt-4_single.jsonl"])
def test_real_single_judgments_equal_show_result(tmp_path, name):
    # real GPT-4 grades: -1 rows (instructlab's: 120 of 160), a 0, half points (7.5, 8.5, 9.5)
    path = REAL / name
    s = run(Config(from_judgments=[path], output=tmp_path / "o", bootstrap=0))
    ours = s["fastchat"]["single"]
    assert_single_table(ours, path)
    graded = sum(1 for line in path.open() if json.loads(line)["score"] != -1)
    assert sum(v["n"] for v in ours.values()) == graded  # every -1 left out, nothing else


@pytest.mark.parametrize("baseline", [None, "phi-3", "phi-3-dpo"])
def test_real_pair_judgments_equal_show_result(tmp_path, baseline):
    # real GPT-4 verdicts of phi-3 vs phi-3-dpo: error games, ties, games that disagree
    path = REAL / "stefanstud_gpt-4_pair.jsonl"
    s = run(Config(from_judgments=[path], baseline=baseline, output=tmp_path / "o", bootstrap=0))
    ours = s["fastchat"]["pair"]
    assert_pair_table(ours, path, baseline)
    errors = sum(1 for line in path.open() if "error" in line)
    assert s["n_battles"] == 75 - errors and errors == 2
    # two models: the Bradley-Terry win probability is the observed share (ties as half), up to
    # the small L2 penalty
    rating = {m["model"]: m["rating"] for m in s["models"]}
    row = ours[0]  # the model ahead (or the one model that is not the baseline)
    other = next(m for m in rating if m != row["model"])
    p = 1 / (1 + 10 ** ((rating[other] - rating[row["model"]]) / 400))
    assert p == pytest.approx(row["win_rate_adjusted"], abs=2e-3)
    if baseline is not None:
        assert rating[baseline] == 1000.0
        mine = next(m for m in s["models"] if m["model"] == row["model"])
        assert mine["predicted_win_rate"] == pytest.approx(p)
