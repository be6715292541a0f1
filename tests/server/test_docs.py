"""The docs tell the truth: docs/protocol.md carries exactly the schemas the code validates with."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_protocol_doc_schemas_match_the_code():
    from gen_protocol_docs import render
    text = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    assert render(text) == text, "docs/protocol.md is stale: run `make docs`"


def test_protocol_doc_names_every_reason_the_server_refuses_a_message_for():
    from server.bridge import RefusedReason
    text = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    counted = text[text.index("Every refused message is counted on the node"):]
    counted = counted[:counted.index("\n\n")]
    assert [r for r in RefusedReason if f"`{r}`" not in counted] == []
