"""eval leaderboard in `gpt4llm report`: the leaderboard table and the forest plot, FastChat
show_result's tables of --from-judgments (real judgment files), and a judge panel's name."""

from __future__ import annotations

import re
from pathlib import Path

from test_leaderboard_run import responder, write_answers

from gpt4llm.evaluate.leaderboard import Config, run


def test_the_report_shows_the_leaderboard(fake_openai, fake_llm_config, tmp_path):
    from gpt4llm.evaluate import report

    fake_openai.responder = responder
    config = Config(
        answers=write_answers(tmp_path),
        baseline="weak",
        judge=fake_llm_config,
        output=tmp_path / "lb",
        bootstrap=50,
    )
    s = run(config)
    got = report.run(report.Config(inputs=[tmp_path / "lb"], output=tmp_path / "report"))
    assert "leaderboard_1.png" in got["charts"]
    html = (tmp_path / "report" / "index.html").read_text()
    assert "<h2>Leaderboard (baseline)</h2>" in html
    for row in s["models"]:
        assert f'<td class="l">{row["model"]}</td><td>{row["rating"]:.0f}</td>' in html
    assert "predicted win rate" in html and "style-controlled rating" in html


def test_the_report_shows_fastchat_tables_of_real_judgments(tmp_path):
    from gpt4llm.evaluate import report

    real = Path(__file__).parents[2] / "data" / "fastchat" / "judgments"
    pair, single = real / "stefanstud_gpt-4_pair.jsonl", real / "wgm20_gpt-4_single.jsonl"
    both = run(Config(from_judgments=[pair, single], output=tmp_path / "both", bootstrap=20))
    alone = run(Config(from_judgments=[single], output=tmp_path / "single", bootstrap=0))
    assert "models" not in alone  # single grades only: no battles, no ratings
    report.run(
        report.Config(inputs=[tmp_path / "both", tmp_path / "single"], output=tmp_path / "r")
    )
    html = (tmp_path / "r" / "index.html").read_text()
    assert html.count("<h2>Leaderboard (from-judgments)</h2>") == 2
    assert "show_result.py --mode pairwise-all" in html
    for r in both["fastchat"]["pair"]:
        cells = [r["win"], r["loss"], r["tie"], f"{100 * r['win_rate_adjusted']:.1f}%"]
        assert re.search(rf'<td class="l">{r["model"]}</td><td>{cells[0]}</td><td>{cells[1]}'
                         rf"</td><td>{cells[2]}</td>.*?<td>{cells[3]}</td></tr>", html)  # fmt: skip
    assert html.count('<table class="fastchat-single">') == 2
    for m, r in alone["fastchat"]["single"].items():
        row = f"<td>{r['turn_1']:.4f}</td><td>{r['turn_2']:.4f}</td><td>{r['score']:.4f}</td>"
        assert f'<td class="l">{m}</td>{row}<td>{r["n"]}</td>' in html
    for row in both["models"]:  # the ratings of the pair judgments beside them
        assert f'<td class="l">{row["model"]}</td><td>{row["rating"]:.0f}</td>' in html


def test_the_report_names_a_leaderboard_judge_panel(fake_openai, fake_llm_config, tmp_path):
    from gpt4llm.evaluate import report
    from gpt4llm.evaluate.judge.config import JudgeLLMConfig

    fake_openai.responder = responder
    judges = JudgeLLMConfig(**(fake_llm_config.model_dump() | {"model": ["j1", "j2"]}))
    run(
        Config(
            answers=write_answers(tmp_path)[:2], judge=judges, output=tmp_path / "lb", bootstrap=0
        )
    )
    report.run(report.Config(inputs=[tmp_path / "lb"], output=tmp_path / "r"))
    html = (tmp_path / "r" / "index.html").read_text()
    assert "judge <code>panel (j1, j2; majority)</code>" in html
