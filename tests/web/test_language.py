"""Chinese by default, English on request, and a catalog that covers every UI text."""

from __future__ import annotations

import shutil
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from tests.web.conftest import open_task, start_request, text
from web import auth

WEB = Path(auth.__file__).parent
EN_PO = WEB / "translations" / "en" / "LC_MESSAGES" / "messages.po"


def test_chinese_by_default_and_english_on_request(make_client, staff_engine):
    start_request(staff_engine, "SR-1")
    client = make_client("complaints")
    html = text(client.get("/"))
    assert '<html lang="zh-CN">' in html and "我的任务" in html and "剩余 2小时" in html
    assert "客户管理部（投诉）" in html

    response = client.get("/lang/en?next=/%3Ftab%3Dgroup")
    assert response.status_code == 302 and response.headers["Location"] == "/?tab=group"
    html = text(client.get("/?tab=group"))
    assert '<html lang="en">' in html
    for english in ("My tasks", "My groups", "Due soon / overdue", "Next task", "2h left",
                    "Customer management (complaints)", "Case no."):
        assert english in html, english
    assert "我的任务" not in html

    task = open_task(staff_engine, "SR-1")
    response = client.post(f"/tasks/{task['id']}/claim", follow=True)
    assert "Task claimed" in text(response)
    response = client.post(f"/tasks/{task['id']}/complete", {"resolution": "x"})
    assert "Enter at least 2 characters" in text(response)

    assert "我的任务" in text(client.get("/lang/zh_CN", follow_redirects=True))


def test_the_choice_survives_signing_out_and_ignores_unknown_languages(make_client):
    client = make_client("frontdesk")
    client.get("/lang/en")
    client.logout()
    assert "Sign in to the Service Center Workbench" in text(client.get("/login"))
    client.get("/lang/xx")
    assert "Sign in to the Service Center Workbench" in text(client.get("/login"))


def test_language_link_returns_to_the_same_page_only_on_this_site(make_client):
    client = make_client("frontdesk")
    assert client.get("/lang/en?next=https://evil.example/").headers["Location"] == "/"
    response = client.get("/lang/en", headers={"Referer": "http://localhost/start"})
    assert response.headers["Location"] == "/start"
    response = client.get("/lang/en", headers={"Referer": "http://evil.example/start"})
    assert response.headers["Location"] == "/"


# the task list's own files (other blueprints add their texts to the same catalog)
OWN_FILES = ("auth.py", "tasks.py", "admin.py", "access.py", "templates/base.html", "templates/auth/",
             "templates/tasks/", "templates/admin/users.html", "templates/admin/user_edit.html",
             "templates/admin/groups.html", "templates/admin/_nav.html", "templates/errors/",
             "templates/macros/forms.html")


def test_every_ui_text_has_an_english_translation():
    method_map = [("**.py", "python"), ("templates/**.html", "jinja2")]
    keywords = {"_": None, "_l": None, "gettext": None, "lazy_gettext": None}
    found = {message for filename, _line, message, _comments, _context
             in extract_from_dir(str(WEB), method_map, keywords=keywords)
             if filename.replace("\\", "/").startswith(OWN_FILES)}
    assert len(found) > 150
    with EN_PO.open("rb") as fh:
        catalog = read_po(fh, locale="en")
    missing = sorted(m for m in found if isinstance(m, str) and not (catalog.get(m) and catalog.get(m).string))
    assert missing == [], f"add to {EN_PO}: {missing}"


def test_catalogs_are_compiled_at_start_when_missing_or_stale(tmp_path, app):
    copy = tmp_path / "translations"
    shutil.copytree(WEB / "translations", copy)
    compiled = copy / "en" / "LC_MESSAGES" / "messages.mo"
    compiled.unlink(missing_ok=True)
    auth.compile_catalogs(app, copy)
    assert compiled.exists() and compiled.stat().st_size > 1000
    good = compiled.read_bytes()
    compiled.write_bytes(b"stale")  # e.g. an old .mo with a newer file time
    auth.compile_catalogs(app, copy)
    assert compiled.read_bytes() == good
