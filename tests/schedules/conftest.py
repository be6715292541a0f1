"""Worker tests (the MQTT bridge and the dispatcher's passes): driven directly on the server's
database through ``app_only`` (tests/conftest.py), without a broker."""
