"""eval leaderboard in `gpt4llm report`: the leaderboard table and the forest plot."""

from __future__ import annotations

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
