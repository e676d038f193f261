"""Human evaluation (the paper's HHH study):
`gpt4llm annotate init | add-annotator | serve | export`.

- `study/`: create a study from model answers (`inputs`, `init`), its files and database
  access (`store`: study.json, the signing key, annotators), export win/tie/loss, majority,
  agreement (Krippendorff's alpha, Fleiss' kappa), pie charts, raw votes and a manifest
  (`export`).
- `tables.py`: the SQLAlchemy models; `db.py`: engines and the transactional operations
  (SQLite or PostgreSQL).
- `app.py`: the FastAPI web app (server-rendered pages, CSRF, escaped answers); `security.py`:
  signed cookies, the sign-in throttle, the body limit and security headers.
Heavy imports (FastAPI, SQLAlchemy, matplotlib) happen inside these modules, which the CLI
imports only when a command runs.
"""
