"""`gpt4llm annotate ...` commands. init is a stage (the stage table registers it from
`stage.py`); export comes from its config (config_command); add-annotator and serve are small
hand-written Typer commands whose options are checked here (one-line errors, exit 2). Secrets
(the admin token, an annotator's link) go to stdout, once; everything else to stderr."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gpt4llm.config import config_command
from gpt4llm.errors import UserError
from gpt4llm.evaluate.human.study.export import ExportConfig

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")

StudyArg = Annotated[Path, typer.Argument(help="Study directory (with study.json).")]


def _console():
    from rich.console import Console

    return Console(stderr=True)


def _run_export(config: ExportConfig) -> dict:
    from rich.table import Table

    from gpt4llm.evaluate.human.study.export import export_study

    summary = export_study(config)
    con = _console()
    for comp in summary["comparisons"]:
        a, b = comp["model_a"], comp["model_b"]
        t = Table(title=f"{a} vs {b} ({comp['pairs']} pairs)")
        for col in (
            "criterion",
            f"{a} wins",
            "tie",
            f"{b} wins",
            "majority a/tie/b/none",
            "alpha (ord.)",
            "Fleiss κ",
        ):
            t.add_column(col)
        for key, c in comp["criteria"].items():
            v, p, m, ag = c["votes"], c["votes_percent"], c["majority"], c["agreement"]
            t.add_row(
                key,
                f"{v[a]} ({p[a]:.1f}%)",
                f"{v['tie']} ({p['tie']:.1f}%)",
                f"{v[b]} ({p[b]:.1f}%)",
                f"{m[a]}/{m['tie']}/{m[b]}/{m['no_majority']}",
                (
                    "—"
                    if ag["krippendorff_alpha_ordinal"] is None
                    else f"{ag['krippendorff_alpha_ordinal']:.3f}"
                ),
                "—" if ag["fleiss_kappa"] is None else f"{ag['fleiss_kappa']:.3f}",
            )
        con.print(t)
    con.print(
        f"{summary['votes']} votes from {summary['annotators_voting']} annotators → {config.output}"
    )
    return summary


def check_serve_options(
    port: int | None,
    host: str | None,
    log_level: str,
    max_body_bytes: int,
    login_attempts: int,
    login_window: float,
    db_timeout: float,
    forwarded_allow_ips: str | None = None,
) -> None:
    """The hand-written serve options, checked before anything is opened."""
    if port is not None and not 1 <= port <= 65535:
        raise UserError(f"--port must be between 1 and 65535 (got {port})")
    if host is not None and (not host.strip() or any(c.isspace() for c in host)):
        raise UserError(f"--host must be a host name or address (got {host!r})")
    if log_level.lower() not in LOG_LEVELS:
        raise UserError(f"--log-level must be one of {', '.join(LOG_LEVELS)} (got {log_level!r})")
    if max_body_bytes < 1024:
        raise UserError(f"--max-body-bytes must be at least 1024 (got {max_body_bytes})")
    if login_attempts < 1:
        raise UserError(f"--login-attempts must be at least 1 (got {login_attempts})")
    if not login_window > 0:
        raise UserError(f"--login-window must be more than 0 seconds (got {login_window})")
    if not db_timeout > 0:
        raise UserError(f"--db-timeout must be more than 0 seconds (got {db_timeout})")
    if forwarded_allow_ips is not None:
        check_proxies(forwarded_allow_ips)


def check_proxies(value: str) -> None:
    """`--forwarded-allow-ips`: `*`, or comma-separated IP addresses and networks (uvicorn
    would silently take a mistyped one as a literal that never matches)."""
    import ipaddress

    items = [item.strip() for item in value.split(",")]
    if items == ["*"]:
        return
    for item in items:
        try:  # as uvicorn reads them: a network with host bits set would never match
            ipaddress.ip_network(item) if "/" in item else ipaddress.ip_address(item)
        except ValueError:
            raise UserError(
                "--forwarded-allow-ips must be comma-separated IP addresses or networks, or *"
                f" (got {item!r})"
            ) from None


def register(app: typer.Typer) -> None:
    """The commands that are not pipeline stages (`annotate init` comes from the stage table,
    `gpt4llm.stages.STAGES`, whose module is `evaluate/human/stage.py`)."""

    @app.command("add-annotator")
    def add_annotator_cmd(
        study: StudyArg,
        name: Annotated[str, typer.Argument(help="Annotator's name (unique in the study).")],
        quota: int | None = typer.Option(
            None, "--quota", help="Most pairs this annotator is given (default: as many as remain)."
        ),
        base_url: str | None = typer.Option(
            None,
            "--base-url",
            help=(
                "Public base URL for the link (default: http://HOST:PORT from init's"
                " --host/--port)."
            ),
        ),
        db_url: str | None = typer.Option(
            None, "--db-url", help="Database URL overriding study.json's."
        ),
    ) -> None:
        """Create an annotator with a secret token and print their personal link.

        Only a hash of the token is stored."""
        from gpt4llm.evaluate.human.study.store import add_annotator, annotator_link

        if base_url is not None and not base_url.startswith(("http://", "https://")):
            raise UserError(f"--base-url must start with http:// or https:// (got {base_url!r})")
        token = add_annotator(study, name, quota=quota, db_url=db_url)
        _console().print(
            f"Annotator [bold]{name}[/bold] added. Personal link (shown only now; or paste the"
            " token at /login):"
        )
        typer.echo(annotator_link(study, token, base_url))

    @app.command("serve")
    def serve_cmd(
        study: StudyArg,
        host: str | None = typer.Option(
            None, "--host", help="Interface to listen on (default: init's --host, 127.0.0.1)."
        ),
        port: int | None = typer.Option(
            None, "--port", help="Port, 1-65535 (default: init's --port, 8000)."
        ),
        db_url: str | None = typer.Option(
            None, "--db-url", help="Database URL overriding study.json's."
        ),
        secure_cookies: bool = typer.Option(
            False, "--secure-cookies", help="Mark the session cookie Secure (use behind HTTPS)."
        ),
        log_level: str = typer.Option(
            "info", "--log-level", help=f"uvicorn log level: {', '.join(LOG_LEVELS)}."
        ),
        max_body_bytes: int = typer.Option(
            65536,
            "--max-body-bytes",
            help=(
                "Largest request body accepted, in bytes (413 above; a vote with the longest "
                "comment, 5,000 characters, fits in 64 KiB)."
            ),
        ),
        login_attempts: int = typer.Option(
            10,
            "--login-attempts",
            help=(
                "Failed sign-ins allowed per client address and per token within "
                "--login-window; then 429 with Retry-After."
            ),
        ),
        login_window: float = typer.Option(
            60.0, "--login-window", help="Seconds over which failed sign-ins are counted."
        ),
        db_timeout: float = typer.Option(
            15.0,
            "--db-timeout",
            help=(
                "Seconds a request waits for the database (a lock, a connection) "
                "before answering 503."
            ),
        ),
        forwarded_allow_ips: str | None = typer.Option(
            None,
            "--forwarded-allow-ips",
            help=(
                "Reverse proxies (comma-separated IP addresses or networks, or *) whose "
                "X-Forwarded-For and X-Forwarded-Proto are believed; default: none, so the "
                "sign-in throttle counts the connecting address, even from loopback."
            ),
        ),
    ) -> None:
        """Serve the annotation web app (FastAPI + uvicorn). The session-signing key is the
        study's secret.key (0600) or $GPT4LLM_ANNOTATE_SECRET."""
        check_serve_options(
            port,
            host,
            log_level,
            max_body_bytes,
            login_attempts,
            login_window,
            db_timeout,
            forwarded_allow_ips,
        )
        from gpt4llm.evaluate.human.app import serve
        from gpt4llm.evaluate.human.study.store import read_study

        srv = read_study(study).get("server", {})
        host = host or srv.get("host", "127.0.0.1")
        port = port or int(srv.get("port", 8000))
        if host not in ("127.0.0.1", "localhost", "::1") and not secure_cookies:
            _console().print(
                "[yellow]note[/yellow]: listening beyond localhost over plain HTTP; put it behind"
                " HTTPS and pass --secure-cookies."
            )
        serve(
            study,
            host=host,
            port=port,
            db_url=db_url,
            secure_cookies=secure_cookies,
            log_level=log_level.lower(),
            max_body=max_body_bytes,
            login_attempts=login_attempts,
            login_window=login_window,
            db_timeout=db_timeout,
            forwarded_allow_ips=forwarded_allow_ips,
        )

    config_command(
        app,
        "export",
        ExportConfig,
        _run_export,
        help=(
            "Export a study: win/tie/loss per criterion and model, majority per pair, "
            "agreement (Krippendorff's alpha, Fleiss' kappa), pie charts, raw votes, "
            "FastChat-format human judgments, manifest."
        ),
        arguments=("study",),
        command_line="annotate export",
    )
