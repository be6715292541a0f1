"""What several web processes on one database must agree on comes from the database: the key
that signs cookies and CSRF tokens; and a file another machine's process stored, missing from
this one's media folder, is a clear 404 and a log line, not a crash. (Two real processes behind
a proxy: tests/e2e/test_several_web_processes.py.)"""
import logging

from server import create_app
from server.cli import init_instance
from server.models import Media
from tests.system import ADMIN_PASSWORD
from tests.web_helpers import PageUser

NO_BROKER = {"mqtt_password": "no-broker"}


def test_a_second_app_on_the_same_database_accepts_the_first_ones_browser_login(make_app):
    s = make_app()
    browser = PageUser(s, "admin", ADMIN_PASSWORD)
    # another process: its own app, its own instance folder, the same database
    other = create_app({**NO_BROKER, "database_url": s.settings.database_url},
                       instance_path=s.tmp / "elsewhere")
    assert other.secret_key == s.app.secret_key
    client = other.test_client()
    for name, value in browser.cookies().items():
        client.set_cookie(name, value)
    assert client.get("/").status_code == 200
    other.extensions["db_engine"].dispose()


def test_an_older_instances_secret_key_file_keeps_its_browsers_logged_in(tmp_path):
    instance = tmp_path / "instance"
    init_instance(instance, ADMIN_PASSWORD, NO_BROKER)
    (instance / "secret_key").write_text("e3b0c44298fc1c149afbf4c8996fb924\n")
    app = create_app(NO_BROKER, instance_path=instance)
    assert app.secret_key == "e3b0c44298fc1c149afbf4c8996fb924"
    app.extensions["db_engine"].dispose()


def test_a_media_row_without_its_file_here_is_a_404_that_the_log_explains(make_app, caplog):
    s = make_app()
    sha = "ab" * 32
    with s.app.extensions["db_sessions"]() as db:
        db.add(Media(sha256=sha, ext="mp3", bytes=1000, duration_ms=1000))
        db.commit()
    with caplog.at_level(logging.ERROR, logger="server"):
        r = s.http.get(f"{s.url}/media/{sha}.mp3", timeout=10)
    assert r.status_code == 404
    assert "media_dir" in caplog.text and "shared" in caplog.text
