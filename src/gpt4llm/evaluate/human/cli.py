"""`gpt4llm annotate ...` commands. init and export come from their configs (config_command);
add-annotator and serve are small hand-written Typer commands. Secrets (the admin token, an
annotator's link) go to stdout, once; everything else to stderr."""

from __future__ import annotations

from pathlib import Path

import typer

from gpt4llm.config import config_command
from gpt4llm.evaluate.human.study import ExportConfig, InitConfig


def _console():
    from rich.console import Console

    return Console(stderr=True)


def _run_init(config: InitConfig) -> dict:
    from gpt4llm.evaluate.human.study import init_study

    summary = init_study(config)
    token = summary.pop("admin_token")
    con = _console()
    con.print(
        f"[bold]Study created[/bold]: {summary['study']}  ({summary['items']} instructions, "
        f"{summary['comparisons']} comparison(s), {summary['pairs']} pairs, {summary['per_item']} annotators per pair, "
        f"{summary['votes_needed']} votes needed; criteria: {', '.join(summary['criteria'])})"
    )
    con.print("Admin token (shown only now, stored hashed; sign in at /login with it):")
    typer.echo(token)
    con.print(f"Next: gpt4llm annotate add-annotator {config.output} NAME   then   gpt4llm annotate serve {config.output}")
    return summary


def _run_export(config: ExportConfig) -> dict:
    from rich.table import Table

    from gpt4llm.evaluate.human.study import export_study

    summary = export_study(config)
    con = _console()
    for comp in summary["comparisons"]:
        a, b = comp["model_a"], comp["model_b"]
        t = Table(title=f"{a} vs {b} ({comp['pairs']} pairs)")
        for col in ("criterion", f"{a} wins", "tie", f"{b} wins", "majority a/tie/b/none", "alpha (ord.)", "Fleiss κ"):
            t.add_column(col)
        for key, c in comp["criteria"].items():
            v, p, m, ag = c["votes"], c["votes_percent"], c["majority"], c["agreement"]
            t.add_row(
                key,
                f"{v[a]} ({p[a]:.1f}%)",
                f"{v['tie']} ({p['tie']:.1f}%)",
                f"{v[b]} ({p[b]:.1f}%)",
                f"{m[a]}/{m['tie']}/{m[b]}/{m['no_majority']}",
                "—" if ag["krippendorff_alpha_ordinal"] is None else f"{ag['krippendorff_alpha_ordinal']:.3f}",
                "—" if ag["fleiss_kappa"] is None else f"{ag['fleiss_kappa']:.3f}",
            )
        con.print(t)
    con.print(f"{summary['votes']} votes from {summary['annotators_voting']} annotators → {config.output}")
    return summary


def register(app: typer.Typer) -> None:
    config_command(
        app,
        "init",
        InitConfig,
        _run_init,
        help="Create a human-evaluation study (pairs of model answers, criteria, annotators per pair); prints the admin token once.",
    )

    @app.command("add-annotator")
    def add_annotator_cmd(
        study: Path = typer.Argument(..., help="Study directory (with study.json)."),
        name: str = typer.Argument(..., help="Annotator's name (unique in the study)."),
        quota: int | None = typer.Option(None, "--quota", help="Most pairs this annotator is given (default: as many as remain)."),
        base_url: str | None = typer.Option(None, "--base-url", help="Public base URL for the link (default: http://HOST:PORT from init's --host/--port)."),
        db_url: str | None = typer.Option(None, "--db-url", help="Database URL overriding study.json's."),
    ) -> None:
        """Create an annotator with a secret token and print their personal link (only a hash is stored)."""
        from gpt4llm.evaluate.human.study import add_annotator, annotator_link

        token = add_annotator(study, name, quota=quota, db_url=db_url)
        _console().print(f"Annotator [bold]{name}[/bold] added. Personal link (shown only now; or paste the token at /login):")
        typer.echo(annotator_link(study, token, base_url))

    @app.command("serve")
    def serve_cmd(
        study: Path = typer.Argument(..., help="Study directory (with study.json)."),
        host: str | None = typer.Option(None, "--host", help="Interface to listen on (default: init's --host, 127.0.0.1)."),
        port: int | None = typer.Option(None, "--port", help="Port (default: init's --port, 8000)."),
        db_url: str | None = typer.Option(None, "--db-url", help="Database URL overriding study.json's."),
        secure_cookies: bool = typer.Option(False, "--secure-cookies", help="Mark the session cookie Secure (use behind HTTPS)."),
        log_level: str = typer.Option("info", "--log-level", help="uvicorn log level."),
    ) -> None:
        """Serve the annotation web app (FastAPI + uvicorn)."""
        from gpt4llm.evaluate.human.app import serve
        from gpt4llm.evaluate.human.study import read_study

        srv = read_study(study).get("server", {})
        host = host or srv.get("host", "127.0.0.1")
        port = port or int(srv.get("port", 8000))
        if host not in ("127.0.0.1", "localhost", "::1") and not secure_cookies:
            _console().print("[yellow]note[/yellow]: listening beyond localhost over plain HTTP; put it behind HTTPS and pass --secure-cookies.")
        serve(study, host=host, port=port, db_url=db_url, secure_cookies=secure_cookies, log_level=log_level)

    config_command(
        app,
        "export",
        ExportConfig,
        _run_export,
        help="Export a study: win/tie/loss per criterion and model, majority per pair, agreement (Krippendorff's alpha, Fleiss' kappa), pie charts, raw votes, manifest.",
        arguments=("study",),
    )
