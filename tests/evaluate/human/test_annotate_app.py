"""The annotation web app through FastAPI's TestClient: access control, isolation, CSRF,
escaping of untrusted answers, malformed / replayed submissions, vote changes, assignment."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from test_annotate_study import make_study

from gpt4llm.evaluate.human.app import COOKIE, create_app
from gpt4llm.evaluate.human.study.store import add_annotator
from gpt4llm.evaluate.human.tables import Pair, Vote, VoteEvent

XSS = '<script>alert(1)</script> and <img src=x onerror=alert(2)> & "quotes"\nline two'
VOTE = {"c_helpfulness": "left", "c_honesty": "tie", "c_harmlessness": "right"}


def evil_answers(model, i):
    return XSS if model == "evil" else f"plain answer {i}"


@pytest.fixture
def env(tmp_path):
    study, admin = make_study(
        tmp_path, n=6, per_item=2, models=("evil", "good"), answers=evil_answers
    )
    tokens = {name: add_annotator(study, name) for name in ("alice", "bob", "carol")}
    app = create_app(study)
    yield {"study": study, "admin": admin, "tokens": tokens, "app": app, "store": app.state.store}
    app.state.store.dispose()


def client(env, name=None) -> TestClient:
    c = TestClient(env["app"])
    if name:
        r = c.get(f"/a/{env['tokens'][name]}")
        assert r.status_code == 200 and ("/pair/" in str(r.url) or str(r.url).endswith("/done"))
    return c


def form_of(html: str) -> dict:
    return {
        "pair": int(re.search(r'action="/pair/(\d+)"', html).group(1)),
        "csrf": re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1),
        "version": int(re.search(r'name="version" value="(\d+)"', html).group(1)),
    }


def counts(env) -> tuple[int, int]:
    with env["store"].read() as s:
        return s.scalar(select(func.count()).select_from(Vote)), s.scalar(
            select(func.count()).select_from(VoteEvent)
        )


def current_page(c: TestClient, path="/next"):
    r = c.get(path)
    assert r.status_code == 200, r.text
    return r, form_of(r.text)


def test_no_access_without_valid_token(env):
    c = client(env)
    for path in ("/next", "/pair/1", "/history", "/done", "/admin", "/"):
        r = c.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login", path
    assert c.post("/pair/1", data={**VOTE, "version": "0", "csrf": "x"}).status_code == 401
    r = c.get("/a/not-a-real-token")
    assert r.status_code == 401 and COOKIE not in r.cookies
    # Login page: wrong token -> 401; right token -> in.
    r = c.get("/login")
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', r.text).group(1)
    r = c.post("/login", data={"csrf": csrf, "token": "nope"})
    assert r.status_code == 401 and "not valid" in r.text
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', r.text).group(1)
    r = c.post(
        "/login", data={"csrf": csrf, "token": env["tokens"]["alice"]}, follow_redirects=True
    )
    assert r.status_code == 200 and "Signed in as <strong>alice</strong>" in r.text
    # A forged cookie (edited payload, old signature) is rejected.
    value = c.cookies.get(COOKIE)
    body, sig = value.rsplit(".", 1)
    c2 = TestClient(env["app"])
    c2.cookies.set(COOKIE, body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + sig)
    assert c2.get("/next", follow_redirects=False).headers["location"] == "/login"
    assert counts(env) == (0, 0)


def test_cookie_flags_and_security_headers(env):
    c = TestClient(env["app"])
    r = c.get(f"/a/{env['tokens']['alice']}", follow_redirects=False)
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
    r = c.get("/next")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert (
        r.headers["referrer-policy"] == "no-referrer" and r.headers["cache-control"] == "no-store"
    )


def test_admin_pages_need_admin_token(env):
    c = client(env, "alice")
    r = c.get("/admin", follow_redirects=False)
    assert r.status_code == 403
    # Login form needs its CSRF token too.
    anon = TestClient(env["app"])
    assert anon.post("/login", data={"token": env["admin"]}).status_code == 403
    r = anon.get("/login")
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', r.text).group(1)
    r = anon.post("/login", data={"csrf": csrf, "token": env["admin"]}, follow_redirects=True)
    assert r.status_code == 200 and str(r.url).endswith("/admin")
    assert "alice" in r.text and "bob" in r.text and "0 of 12 votes" in r.text
    # The admin cannot vote.
    assert anon.get("/next", follow_redirects=False).headers["location"] == "/login"
    # Progress shows up after a vote.
    _, f = current_page(c)
    assert (
        c.post(f"/pair/{f['pair']}", data={**VOTE, "csrf": f["csrf"], "version": "0"}).status_code
        == 200
    )
    r = anon.get("/admin")
    assert "1 of 12 votes" in r.text
    assert re.search(r"<td>alice</td>\s*<td>1</td>", r.text)


def test_annotator_cannot_read_or_change_anothers_votes(env):
    alice, bob, carol = client(env, "alice"), client(env, "bob"), client(env, "carol")
    r, f = current_page(alice)
    secret_comment = "alice-private-comment-42"
    r = alice.post(
        f"/pair/{f['pair']}",
        data={**VOTE, "csrf": f["csrf"], "version": "0", "comment": secret_comment},
    )
    assert r.status_code == 200
    pid = f["pair"]
    # Bob is given the same pair (per_item=2, fill pairs first) but sees an empty form, not
    # Alice's vote.
    r, fb = current_page(bob)
    assert fb["pair"] == pid and fb["version"] == 0
    assert secret_comment not in r.text and "checked" not in r.text
    bob.post(
        f"/pair/{pid}",
        data={
            "c_helpfulness": "right",
            "c_honesty": "right",
            "c_harmlessness": "right",
            "csrf": fb["csrf"],
            "version": "0",
        },
    )
    # Carol: the pair is full, so not hers: reading and writing answer 404 and change nothing.
    assert carol.get(f"/pair/{pid}").status_code == 404
    fc = form_of(carol.get("/next").text)
    r = carol.post(f"/pair/{pid}", data={**VOTE, "csrf": fc["csrf"], "version": "1"})
    assert r.status_code == 404
    r = carol.post(f"/pair/{pid}", data={**VOTE, "csrf": fc["csrf"], "version": "0"})
    assert r.status_code == 404
    # Bob cannot use Alice's CSRF token with his session either.
    r = bob.post(f"/pair/{pid}", data={**VOTE, "csrf": f["csrf"], "version": "1"})
    assert r.status_code == 403
    with env["store"].read() as s:
        votes = {
            v.annotator_id: (json.loads(v.choices), v.comment, v.version)
            for v in s.scalars(select(Vote).where(Vote.pair_id == pid))
        }
    assert votes[1] == (
        {"helpfulness": "left", "honesty": "tie", "harmlessness": "right"},
        secret_comment,
        1,
    )
    assert votes[2][0] == {"helpfulness": "right", "honesty": "right", "harmlessness": "right"}
    assert set(votes) == {1, 2}
    # Alice's history lists only her pair.
    h = alice.get("/history").text
    assert h.count('href="/pair/') == len(re.findall(r"<tr>\s*<td>\d+</td>", h))


def test_csrf_missing_or_wrong_is_403_and_changes_nothing(env):
    c = client(env, "alice")
    _, f = current_page(c)
    for bad in (
        {},
        {"csrf": ""},
        {"csrf": "0" * 64},
        {"csrf": f["csrf"][:-1] + ("0" if f["csrf"][-1] != "0" else "1")},
    ):
        r = c.post(f"/pair/{f['pair']}", data={**VOTE, "version": "0", **bad})
        assert r.status_code == 403, bad
    # Logout needs it too.
    assert c.post("/logout", data={}).status_code == 403
    assert counts(env) == (0, 0)
    assert (
        c.post(f"/pair/{f['pair']}", data={**VOTE, "version": "0", "csrf": f["csrf"]}).status_code
        == 200
    )
    assert counts(env) == (1, 1)
    r = c.post("/logout", data={"csrf": f["csrf"]}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"


def test_untrusted_answers_are_escaped(env):
    c = client(env, "alice")
    r, _ = current_page(c)
    html = r.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "&amp; &#34;quotes&#34;" in html
    assert "<script>alert" not in html and "<img" not in html
    # Our only script is the static file.
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/app.js">']
    # Newlines survive (shown with white-space: pre-wrap).
    assert (
        "&lt;/script&gt; and &lt;img src=x onerror=alert(2)&gt; &amp; &#34;quotes&#34;\nline two"
        in html
    )
    css = c.get("/static/app.css").text
    assert re.search(r"\.text\s*\{[^}]*white-space:\s*pre-wrap", css)


def test_malformed_submissions_are_4xx_and_change_nothing(env):
    c = client(env, "alice")
    _, f = current_page(c)
    p, base = f["pair"], {"csrf": f["csrf"], "version": "0"}
    cases = [
        ("/pair/999999", {**VOTE, **base}, 404),  # unknown pair
        ("/pair/abc", {**VOTE, **base}, 404),  # not an id: no such pair
        (f"/pair/{p}", {**VOTE, "c_bogus": "left", **base}, 422),  # criterion that does not exist
        (f"/pair/{p}", {**VOTE, "c_honesty": "maybe", **base}, 422),  # not a choice
        (f"/pair/{p}", {"c_helpfulness": "left", **base}, 422),  # criteria missing
        (f"/pair/{p}", {**VOTE, "csrf": f["csrf"], "version": "x"}, 422),
        (f"/pair/{p}", {**VOTE, "csrf": f["csrf"], "version": "-1"}, 422),
        (f"/pair/{p}", {**VOTE, "csrf": f["csrf"]}, 422),  # version missing
        (f"/pair/{p}", {**VOTE, **base, "comment": "x" * 5001}, 422),
    ]
    for path, data, status in cases:
        assert c.post(path, data=data).status_code == status, (path, data)
    # Two values for one criterion.
    r = c.post(
        f"/pair/{p}",
        content=f"csrf={f['csrf']}&version=0&c_helpfulness=left&c_helpfulness=right&c_honesty=tie&c_harmlessness=tie",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 422
    assert counts(env) == (0, 0)
    # A good submit, then the identical POST replayed: 409, nothing changes.
    assert c.post(f"/pair/{p}", data={**VOTE, **base}).status_code == 200
    assert counts(env) == (1, 1)
    r = c.post(
        f"/pair/{p}",
        data={"c_helpfulness": "right", "c_honesty": "right", "c_harmlessness": "right", **base},
    )
    assert r.status_code == 409
    assert c.post(f"/pair/{p}", data={**VOTE, **base}).status_code == 409
    assert counts(env) == (1, 1)
    with env["store"].read() as s:
        assert json.loads(s.scalar(select(Vote.choices))) == {
            "helpfulness": "left",
            "honesty": "tie",
            "harmlessness": "right",
        }


def test_going_back_and_changing_a_vote(env):
    c = client(env, "alice")
    _, f1 = current_page(c)
    r = c.post(
        f"/pair/{f1['pair']}", data={**VOTE, "csrf": f1["csrf"], "version": "0", "comment": "first"}
    )
    f2 = form_of(r.text)
    assert f2["pair"] != f1["pair"] and f2["version"] == 0
    assert f'href="/pair/{f1["pair"]}"' in r.text  # the "previous pair" link
    r = c.get(f"/pair/{f1['pair']}")
    back = form_of(r.text)
    assert back["version"] == 1 and ">first</textarea>" in r.text
    assert re.search(r'name="c_helpfulness" value="left" required checked', r.text)
    r = c.post(
        f"/pair/{f1['pair']}",
        data={
            "c_helpfulness": "tie",
            "c_honesty": "tie",
            "c_harmlessness": "tie",
            "csrf": back["csrf"],
            "version": "1",
            "comment": "changed",
        },
    )
    assert r.status_code == 200 and form_of(r.text)["pair"] == f2["pair"]  # back to the open pair
    with env["store"].read() as s:
        v = s.scalar(select(Vote).where(Vote.pair_id == f1["pair"]))
        events = s.scalars(
            select(VoteEvent).where(VoteEvent.pair_id == f1["pair"]).order_by(VoteEvent.id)
        ).all()
    assert (
        json.loads(v.choices) == {"helpfulness": "tie", "honesty": "tie", "harmlessness": "tie"}
        and v.version == 2
        and v.comment == "changed"
    )
    assert [e.version for e in events] == [1, 2] and json.loads(events[0].choices)[
        "helpfulness"
    ] == "left"
    assert counts(env) == (1, 2)
    # The page shown before the change is now stale.
    assert (
        c.post(
            f"/pair/{f1['pair']}", data={**VOTE, "csrf": back["csrf"], "version": "1"}
        ).status_code
        == 409
    )


def test_each_pair_gets_per_item_annotators(env):
    done = {}
    for name in ("alice", "bob", "carol"):
        c = client(env, name)
        n = 0
        while True:
            r = c.get("/next")
            if "/done" in str(r.url):
                break
            f = form_of(r.text)
            assert (
                c.post(
                    f"/pair/{f['pair']}", data={**VOTE, "csrf": f["csrf"], "version": "0"}
                ).status_code
                == 200
            )
            n += 1
        done[name] = n
        assert "nothing left for you" in r.text
    assert done == {"alice": 6, "bob": 6, "carol": 0}
    with env["store"].read() as s:
        assert [p.n_assigned for p in s.scalars(select(Pair))] == [2] * 6
        per_pair = s.execute(select(Vote.pair_id, func.count()).group_by(Vote.pair_id)).all()
    assert sorted(n for _, n in per_pair) == [2] * 6


def test_quota_limits_an_annotator(tmp_path):
    study, _ = make_study(tmp_path, n=5, per_item=1)
    token = add_annotator(study, "q", quota=2)
    app = create_app(study)
    c = TestClient(app)
    r = c.get(f"/a/{token}")
    assert "0 of 2 pairs" in r.text
    for _ in range(2):
        f = form_of(r.text)
        r = c.post(f"/pair/{f['pair']}", data={**VOTE, "csrf": f["csrf"], "version": "0"})
    assert str(r.url).endswith("/done") and "(2)" in r.text
    app.state.store.dispose()


def test_keyboard_help_and_script_are_served(env):
    c = client(env, "alice")
    r, _ = current_page(c)
    assert "<kbd>1</kbd> A better" in r.text and "<kbd>Enter</kbd> submit" in r.text
    js = c.get("/static/app.js")
    assert js.status_code == 200 and "keydown" in js.text


def test_access_log_hides_personal_links():
    import logging

    from gpt4llm.evaluate.human.app import RedactTokens

    rec = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "",
        0,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:1", "GET", "/a/SECRET-TOKEN", "1.1", 303),
        None,
    )
    assert RedactTokens().filter(rec) is True
    assert "SECRET-TOKEN" not in rec.getMessage() and "/a/***" in rec.getMessage()


def test_serve_and_export_on_a_missing_study_are_user_errors(tmp_path):
    from test_annotate_study import cli_app
    from typer.testing import CliRunner

    from gpt4llm.errors import UserError

    for args in (
        ["serve", str(tmp_path / "nope")],
        ["export", str(tmp_path / "nope")],
        ["add-annotator", str(tmp_path / "nope"), "x"],
    ):
        r = CliRunner().invoke(cli_app(), args)
        assert isinstance(r.exception, UserError) and "not a study" in str(r.exception), args


def test_login_and_csrf_checks_live_in_one_dependency_each(env):
    """Every annotating route resolves its annotator through `annotator_required`, the admin
    page through `admin_required`, every POST checks CSRF through `checked_form`; all of them
    through the one `visitor` that reads the cookie."""
    from fastapi.routing import APIRoute

    from gpt4llm.evaluate.human import app as web
    from gpt4llm.evaluate.human.app import admin_required, annotator_required, checked_form, visitor

    def calls(dependant) -> set:
        out = set()
        for d in dependant.dependencies:
            out |= {d.call} | calls(d)
        return out

    routers = (web.entry, web.annotating, web.admin)  # what create_app includes
    routes = {
        (m, r.path): calls(r.dependant)
        for x in routers
        for r in x.routes
        if isinstance(r, APIRoute)
        for m in r.methods
    }
    assert len(routes) == 12
    for path in ("/next", "/pair/{pair_id}", "/history", "/done"):
        assert annotator_required in routes[("GET", path)] and visitor in routes[("GET", path)], (
            path
        )
    assert annotator_required in routes[("POST", "/pair/{pair_id}")]
    assert admin_required in routes[("GET", "/admin")]
    for (method, path), deps in routes.items():
        if method == "POST":
            assert checked_form in deps, path
