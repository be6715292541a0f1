"""Audio tests: Vietnamese normalisation, the speech engines (espeak-ng, gTTS against a local
stand-in) and the pipeline (ffmpeg). The API upload test uses ``make_app`` (tests/conftest.py)."""
