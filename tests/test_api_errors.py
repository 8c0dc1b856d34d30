"""The API's error codes: one table (edge/api/problems.py), said in every console language, given by every
refusal, and in every error body the app makes. In process, no daemon: the gate's side is a stub."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from edge.api.app import create_app
from edge.api.problems import BY_STATUS, CODES
from edge.api.tokens import Caller

EDGE = Path(__file__).resolve().parents[1] / "edge"


def console_tables() -> dict[str, dict[str, str]]:
    from edge.api.app import error_words
    text = error_words()
    found = re.search(r"window\.GK_ERRORS\s*=\s*(\{.*\});", text, re.S)
    assert found, "i18n-errors.js sets window.GK_ERRORS = {...};"
    return json.loads(found.group(1))


def test_every_code_is_said_in_english_and_chinese_and_nothing_else():
    tables = console_tables()
    assert set(tables) == {"en", "zh"}
    for lang, table in tables.items():
        assert set(table) == set(CODES), (lang, set(table) ^ set(CODES))
        assert all(isinstance(v, str) and v.strip() for v in table.values()), lang
    assert all(re.search(r"[\u4e00-\u9fff]", v) for v in tables["zh"].values())  # written in Chinese
    assert all(re.fullmatch(r"[a-z][a-z_]*[a-z]", c) for c in CODES)


def calls(path: Path, name: str):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == name:
            yield node


def literal(node: ast.Call, position: int, keyword: str):
    for k in node.keywords:
        if k.arg == keyword:
            return ast.literal_eval(k.value)
    return ast.literal_eval(node.args[position]) if len(node.args) > position else None


@pytest.mark.parametrize("path", sorted((EDGE / "desks").glob("*.py")), ids=lambda p: p.name)
def test_every_desk_refusal_has_a_listed_code(path):
    for node in calls(path, "Refused"):
        assert literal(node, 3, "reason") in CODES, f"{path.name}:{node.lineno}"


def test_every_api_error_and_mode_refusal_has_a_listed_code():
    seen = 0
    for path in [*sorted((EDGE / "api").rglob("*.py")), EDGE / "core" / "modes.py"]:
        for name, position in (("ApiError", 1), ("ModeRefused", 2)):
            for node in calls(path, name):
                if path.name == "problems.py" and name == "ApiError":
                    continue
                assert literal(node, position, "code") in CODES, f"{path.name}:{node.lineno}"
                seen += 1
    assert seen >= 10 and set(BY_STATUS.values()) <= set(CODES)


class Tokens:
    async def check(self, token):
        return {"gk_guard": Caller("t-1", "p-guard", "guard"),
                "gk_central": Caller("t-2", "p-central", "central")}.get(token)

    async def live(self, token_id):
        return True


class Gate:
    """Just enough of RemoteServices for the routes that reach it here."""
    tokens, desk = Tokens(), None
    site = SimpleNamespace(site="s", gate="g", doors=["main"], walkin=False)

    def has_door(self, door):
        return door == "main"

    async def request_mode(self, *args):
        from edge.core.modes import ModeRefused
        raise ModeRefused(409, "the fire input is still active", "fire_input_active")


@pytest.fixture
def client():  # one per test: its loop's threads (a file read) end with it
    with TestClient(create_app(Gate()), raise_server_exceptions=False) as c:
        yield c


GUARD = {"Authorization": "Bearer gk_guard"}


@pytest.mark.parametrize("method, path, kwargs, status, code", [
    ("GET", "/status", {}, 401, "unauthorized"),
    ("GET", "/status", {"headers": {"Authorization": "Bearer gk_central"}}, 403, "forbidden"),
    ("GET", "/no/such/path", {}, 404, "not_found"),
    ("PUT", "/status", {}, 405, "method_not_allowed"),
    ("POST", "/session", {"json": {"token": "gk_wrong"}}, 401, "invalid_token"),
    ("POST", "/doors/main/open", {"headers": GUARD, "json": {"why": "x"}}, 422, "invalid"),
    ("POST", "/doors/nowhere/open", {"headers": GUARD, "json": {"reason": "courier"}}, 404, "no_such_door"),
    ("POST", "/doors/main/open", {"headers": {**GUARD, "Content-Length": "70000"}}, 413, "body_too_large"),
    ("POST", "/mode", {"headers": GUARD, "json": {"mode": "fire", "scope": "site", "reason": "alarm"}}, 422,
     "fire_is_per_gate"),
    ("POST", "/mode", {"headers": GUARD, "json": {"mode": "normal", "reason": "all clear"}}, 409,
     "fire_input_active"),
    ("POST", "/visits/0011223344556677/areas", {"headers": GUARD, "json": {"areas": ["site"], "reason": "tour"}},
     403, "forbidden"),
    ("GET", "/visits/0011223344556677", {"headers": GUARD}, 503, "walkin_not_set_up"),
    ("GET", "/console/nothing.js", {}, 404, "not_found"),
])
def test_error_bodies_carry_their_code(client, method, path, kwargs, status, code):
    r = client.request(method, path, **kwargs)
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert set(r.json()) == {"detail", "code"}


def test_a_cookie_change_without_x_requested_with_is_refused_with_its_code(client):
    assert client.post("/session", json={"token": "gk_guard"}).status_code == 200
    try:
        r = client.post("/doors/main/open", json={"reason": "courier"})
        assert (r.status_code, r.json()["code"]) == (403, "requested_with_missing")
    finally:
        client.delete("/session")


def test_the_schema_names_both_ways_in_and_every_route_its_replies(client):
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"] == {
        "bearer": {"type": "http", "scheme": "bearer", "description": spec["components"]["securitySchemes"]
                   ["bearer"]["description"]},
        "console_session": {"type": "apiKey", "in": "cookie", "name": "gk_session", "description": spec[
            "components"]["securitySchemes"]["console_session"]["description"]}}
    open_to_all = {("get", "/health"), ("get", "/metrics"), ("post", "/session"), ("delete", "/session")}
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            replies = op["responses"]
            ok = next(s for s in replies if s.startswith("2"))
            assert replies[ok].get("content"), (method, path)  # each success names what it returns
            if (method, path) not in open_to_all:
                assert op["security"] == [{"bearer": []}, {"console_session": []}], (method, path)
                assert {"401", "403"} <= set(replies), (method, path)
            for status, reply in replies.items():
                if status[0] in "45":
                    assert reply["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
    assert set(spec["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]) == set(CODES)
    assert "text/event-stream" in spec["paths"]["/events/stream"]["get"]["responses"]["200"]["content"]
    assert "image/png" in spec["paths"]["/visits/{visit}/pass.png"]["get"]["responses"]["200"]["content"]
    assert "text/plain" in spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]


def test_docs_need_no_cdn_and_no_inline_script(client):
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-security-policy"].startswith("default-src 'self';")
    assert "<script>" not in page.text and "//" not in page.text.replace("<!DOCTYPE", "")  # no inline, no host
    for src in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        assert src.startswith("/docs/") and client.get(src).status_code == 200, src
    assert client.get("/redoc").status_code == 404  # it would load its script from a CDN
    assert client.get("/openapi.json").status_code == 200
