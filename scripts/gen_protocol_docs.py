"""Write the JSON Schemas of device_agent/schemas.py into docs/protocol.md between its markers."""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from device_agent.schemas import markdown  # noqa: E402

BEGIN, END = "<!-- schemas:begin -->", "<!-- schemas:end -->"


def render(text: str) -> str:
    return re.sub(re.escape(BEGIN) + ".*?" + re.escape(END),
                  lambda _: f"{BEGIN}\n{markdown()}{END}", text, flags=re.S)


if __name__ == "__main__":
    doc = ROOT / "docs" / "protocol.md"
    doc.write_text(render(doc.read_text(encoding="utf-8")), encoding="utf-8")
