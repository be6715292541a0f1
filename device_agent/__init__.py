"""LoaPhuong's speaker node agent (runs alone on a Raspberry Pi: stdlib, paho-mqtt, cryptography
and jsonschema only; it never imports server/, schedules/ or audio/). ``protocol`` is the wire
contract the server imports too; ``agent.Agent`` is the node; ``python -m device_agent`` runs it.
"""

__version__ = "0.1.0"
