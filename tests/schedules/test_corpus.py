"""A corpus of malformed payloads (tests/corpus/, one small file each, named after what is
wrong; tests/corpus/index.json gives the reason a node must refuse each with). Every file goes to
the agent's envelope checker and, on each node topic, to the server's bridge."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device_agent.protocol import ProtocolError, canonical_bytes, verify_envelope
from tests.schedules.helpers import KINDS, bad_message_changes_nothing_but_what_it_may

CORPUS = Path(__file__).parent.parent / "corpus"
INDEX = json.loads((CORPUS / "index.json").read_text(encoding="utf-8"))
NOW = 1_750_000_000_000
KEY = Ed25519PrivateKey.generate()
KEYS = {"srv-1": KEY.public_key()}


def _payload(name: str) -> bytes:
    raw = (CORPUS / name).read_bytes()
    if INDEX[name].get("sign"):  # signature-dependent cases: signed here by the trusted key
        env = json.loads(raw)
        env["sig"] = base64.b64encode(KEY.sign(canonical_bytes(env))).decode()
        raw = json.dumps(env).encode()
    return raw


def test_every_corpus_file_is_in_the_index_and_small():
    files = {p.name for p in CORPUS.iterdir() if p.name != "index.json"}
    assert files == set(INDEX)
    assert len(files) >= 30
    assert all((CORPUS / f).stat().st_size <= 16_384 for f in files)


@pytest.mark.parametrize("name", sorted(INDEX))
def test_the_node_refuses_each_corpus_payload_with_its_reason(name):
    with pytest.raises(ProtocolError) as err:
        verify_envelope(_payload(name), "loa/v1/nodes/loa-cho/cmd", prefix="loa/v1",
                        node_id="loa-cho", groups=(), keys=KEYS, now_ms=NOW)
    assert err.value.reason == INDEX[name]["reason"], err.value


CASES = [(name, kind) for name in sorted(INDEX) for kind in KINDS]


@pytest.mark.parametrize("name,kind", CASES)
def test_the_bridge_survives_each_corpus_payload(node_bridge, name, kind):
    """Never raises, writes at most the one row a message may make (an envelope is, after all,
    valid telemetry: v and ts), and the node's next valid event is still stored."""
    bad_message_changes_nothing_but_what_it_may(node_bridge, kind, _payload(name))
