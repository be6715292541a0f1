"""The docs tell the truth: docs/protocol.md carries exactly the schemas the code validates with."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_protocol_doc_schemas_match_the_code():
    from gen_protocol_docs import render
    text = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    assert render(text) == text, "docs/protocol.md is stale: run `make docs`"
