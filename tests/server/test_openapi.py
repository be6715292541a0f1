"""The published OpenAPI document describes exactly the API routes the server has."""
import re

from server import create_app


def _flask_api_routes(app) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1"):
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((method.lower(), path))
    return routes


def test_openapi_document_lists_every_route_and_no_other(tmp_path):
    app = create_app({"tts_engines": ["espeak"]}, instance_path=tmp_path)
    doc = app.test_client().get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == _flask_api_routes(app)


def test_openapi_references_resolve(tmp_path):
    app = create_app({"tts_engines": ["espeak"]}, instance_path=tmp_path)
    doc = app.test_client().get("/api/v1/openapi.json").get_json()
    refs = set(re.findall(r'"#/components/schemas/([A-Za-z]+)"', str(doc).replace("'", '"')))
    assert refs and refs <= set(doc["components"]["schemas"])


def test_every_json_request_body_is_one_of_the_request_models(tmp_path):
    """Request rules are declared once, in server/bodies.py: the document names those models."""
    from server.bodies import MODELS
    app = create_app({"tts_engines": ["espeak"]}, instance_path=tmp_path)
    doc = app.test_client().get("/api/v1/openapi.json").get_json()
    models = {m.__name__ for m in MODELS}
    bodies = {}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for mime, content in op.get("requestBody", {}).get("content", {}).items():
                bodies[(method, path, mime)] = content["schema"]
    assert any(mime == "application/json" for _, _, mime in bodies)
    for where, schema in bodies.items():
        assert set(schema) == {"$ref"}, where
        assert schema["$ref"].rpartition("/")[2] in models, where


def test_every_error_code_has_one_status_and_the_document_names_it_there():
    from server.errors import STATUS, ErrorCode
    from server.openapi import ERRORS
    assert set(STATUS) == set(ErrorCode)
    for code, status in STATUS.items():
        if str(status) in ERRORS:  # the statuses an operation documents (not 405, 500, 503)
            assert re.search(rf"[ (]{code}[,)]", ERRORS[str(status)]["description"]), code
