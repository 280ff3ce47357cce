"""Administration: users and groups (administrators only)."""

from __future__ import annotations

from tests.web.conftest import open_task, start_request, text


def test_only_administrators_reach_the_admin_pages(make_client):
    for user in ("frontdesk", "director", "owner"):
        client = make_client(user)
        response = client.get("/admin/users")
        assert response.status_code == 403, user
        assert "无权访问" in text(response)
        assert client.post("/admin/users", {"username": "x", "password": "xxxx"}).status_code == 403
    assert make_client().get("/admin/users").status_code == 302
    admin = make_client("admin")
    assert admin.get("/admin/users").status_code == 200
    assert 'href="/admin/users"' in text(admin.get("/"))
    assert 'href="/admin/users"' not in text(make_client("frontdesk").get("/"))


def test_admin_creates_a_user_who_then_works_in_their_group(make_client, staff_engine):
    admin = make_client("admin")
    response = admin.post("/admin/users", {"username": "frontdesk2", "display_name": "前台 孟雪",
                                           "password": "Qing-Shan-7429", "groups": ["front_desk"]})
    assert response.status_code == 302
    html = text(admin.get("/admin/users"))
    assert 'data-username="frontdesk2"' in html and "前台 孟雪" in html and "已创建用户 frontdesk2" in html

    staff_engine.start("lost_item", business_key="LI-9", variables={"itemName": "水杯"}, user="frontdesk")
    newcomer = make_client()
    assert newcomer.login("frontdesk2", "Qing-Shan-7429").status_code == 302
    assert 'data-business-key="LI-9"' in text(newcomer.get("/?tab=group"))


def test_create_user_errors_are_shown_on_the_form(make_client):
    admin = make_client("admin")
    response = admin.post("/admin/users", {"username": "frontdesk", "display_name": "重复", "password": "abcd"})
    assert response.status_code == 422 and "用户 frontdesk 已存在" in text(response)
    response = admin.post("/admin/users", {"username": "bad name!", "password": "abcd"})
    assert response.status_code == 422 and "用户名只能包含" in text(response)
    response = admin.post("/admin/users", {"username": "shorty", "password": "ab"})
    assert response.status_code == 422 and "密码至少 10 位" in text(response)


def test_edit_groups_display_name_and_deactivate(make_client, staff_engine):
    start_request(staff_engine, "SR-1")
    task = open_task(staff_engine, "SR-1")
    admin = make_client("admin")
    escort = make_client("escort")
    assert escort.get(f"/tasks/{task['id']}").status_code == 404
    response = admin.post("/admin/users/escort", {"display_name": "陪检员 孙伟（兼投诉）",
                                                  "groups": ["escort", "complaint_office"], "active": "true"})
    assert response.status_code == 302
    assert escort.get(f"/tasks/{task['id']}").status_code == 200  # groups are read on every request
    assert "陪检员 孙伟（兼投诉）" in text(escort.get("/"))

    admin.post("/admin/users/escort", {"display_name": "陪检员 孙伟", "groups": ["escort"],
                                       "active": ["false"]})
    assert escort.get("/").status_code == 302  # signed out
    assert make_client().login("escort").status_code == 401


def test_admin_cannot_lock_themselves_out(make_client, staff_engine):
    admin = make_client("admin")
    response = admin.post("/admin/users/admin", {"display_name": "x", "groups": ["front_desk"], "active": "true"},
                          follow=True)
    assert "不能停用自己的账号" in text(response)
    assert "admin" in staff_engine.user_groups("admin")


def test_reset_password(make_client):
    admin = make_client("admin")
    response = admin.post("/admin/users/caller/password", {"password": "newpass", "password_again": "nope"},
                          follow=True)
    assert "两次输入的密码不一致" in text(response)
    response = admin.post("/admin/users/caller/password",
                          {"password": "Hui-Fang-Ben-88", "password_again": "Hui-Fang-Ben-88"}, follow=True)
    assert "已重置 caller 的密码" in text(response)
    assert make_client().login("caller", "demo").status_code == 401
    assert make_client().login("caller", "Hui-Fang-Ben-88").status_code == 302
    assert admin.get("/admin/users/ghost").status_code == 404


def test_groups_list_and_create(make_client):
    admin = make_client("admin")
    html = text(admin.get("/admin/groups"))
    assert 'data-group="front_desk"' in html and "前台服务" in html
    response = admin.post("/admin/groups", {"id": "pharmacy", "name": "药剂科", "name_en": "Pharmacy", "kind": "unit"})
    assert response.status_code == 302
    assert 'data-group="pharmacy"' in text(admin.get("/admin/groups"))
    response = admin.post("/admin/groups", {"id": "pharmacy", "name": "又一个"})
    assert response.status_code == 422 and "组 pharmacy 已存在" in text(response)
    assert 'value="pharmacy"' in text(admin.get("/admin/users"))  # offered when creating users


def test_new_passwords_follow_the_policy_with_the_rule_named(make_client, staff_engine):
    admin = make_client("admin")
    cases = [("short-1", "密码至少 10 位"),
             ("liuxiaoyu-2026", "密码不能是用户名，也不能包含用户名"),
             ("LIUXIAOYU", "密码至少 10 位"),
             ("Password123", "密码过于常见"),
             ("1qaz2wsx3edc", "密码过于常见"),
             ("13812345678", "密码过于常见")]
    for password, rule in cases:
        response = admin.post("/admin/users", {"username": "liuxiaoyu", "display_name": "刘晓雨",
                                               "password": password, "groups": ["front_desk"]})
        assert response.status_code == 422, password
        assert rule in text(response), password
    assert staff_engine.user_groups("liuxiaoyu") == []  # nothing was created

    for password, rule in (("welcome2026", "密码过于常见"), ("Caller-Hui-Fang", "不能包含用户名")):
        response = admin.post("/admin/users/caller/password", {"password": password, "password_again": password},
                              follow=True)
        assert rule in text(response) and "已重置" not in text(response), password
    assert make_client().login("caller").status_code == 302  # the old password still works

    response = admin.post("/admin/users", {"username": "liuxiaoyu", "display_name": "刘晓雨",
                                           "password": "Yun-Duo-Shu-42", "groups": ["front_desk"]})
    assert response.status_code == 302
    assert make_client().login("liuxiaoyu", "Yun-Duo-Shu-42").status_code == 302


def test_password_rules_in_english(make_client):
    admin = make_client("admin")
    admin.get("/lang/en")
    response = admin.post("/admin/users", {"username": "liuxiaoyu", "password": "short"})
    assert response.status_code == 422 and "at least 10 characters" in text(response)


def test_deactivation_and_reset_end_sessions_and_the_admin_can_sign_out_and_unlock(make_client, staff_engine):
    admin = make_client("admin")
    caller, caller_phone = make_client("caller"), make_client("caller")
    page = text(admin.get("/admin/users/caller"))
    assert page.count("<tr><td class=\"nowrap\">") == 2 and 'id="revoke-sessions"' in page

    response = admin.post("/admin/users/caller/sessions/revoke", follow=True)
    assert "2 个会话" in text(response) and 'id="no-sessions"' in text(response)
    assert caller.get("/").status_code == 302 and caller_phone.get("/").status_code == 302

    for _ in range(5):
        make_client().login("caller", "not-the-password")
    assert make_client().login("caller").status_code == 429
    page = text(admin.get("/admin/users/caller"))
    assert 'id="lock-state"' in page and "账号已临时锁定" in page
    admin.post("/admin/users/caller/unlock")
    assert 'id="lock-state"' not in text(admin.get("/admin/users/caller"))
    assert make_client().login("caller").status_code == 302

    actions = [e["action"] for e in staff_engine.audit.query()[0]]
    assert "sessions_revoked" in actions and "unlocked" in actions and "locked" in actions
