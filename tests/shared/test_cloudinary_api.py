"""shared.cloudinary_api's actions on the wire (against the stateful stand-in, through the real SDK): one 404
policy, renames that never overwrite, every timeout cut to the request's budget, and a loud failure if the
SDK internal it configures moves."""

from __future__ import annotations

import sys

import pytest

from shared import budget, cloudinary_api
from shared.assets import AssetRef
from shared.errors import DependencyUnavailable
from tests.fakes.cloudinary import Fault
from tests.helpers import at_once_in_fresh_processes, in_a_fresh_process

CHAIR = AssetRef("shop/chair")
LAMP = AssetRef("shop/lamp", "image", "authenticated")


@pytest.fixture
def cloudinary(fake_cloudinary):
    fake_cloudinary.add_asset("shop/chair", tags=["old"])
    fake_cloudinary.add_asset("shop/lamp", type="authenticated")
    return fake_cloudinary


def test_resource_reads_the_named_asset_and_answers_none_when_it_is_gone(cloudinary):
    assert cloudinary_api.resource(CHAIR)["public_id"] == "shop/chair"
    assert cloudinary_api.resource(AssetRef("shop/gone")) is None
    assert [(call.api, call.action, call.path.split("/")[5]) for call in cloudinary.calls] == [
        ("admin", "resource", "upload"), ("admin", "resource", "upload")]


def test_add_tag_adds_without_replacing_and_a_vanished_asset_is_asset_not_found(cloudinary):
    cloudinary_api.add_tag(["a", "b"], CHAIR)
    assert cloudinary.asset("shop/chair")["tags"] == ["old", "a", "b"]
    [call] = cloudinary.writes
    assert call.params["command"] == "add" and call.params["public_ids[]"] == ["shop/chair"]

    with pytest.raises(cloudinary_api.AssetNotFound):  # Cloudinary answers 200 and leaves it out
        cloudinary_api.add_tag("x", AssetRef("shop/gone"))


def test_rename_never_overwrites_and_invalidates(cloudinary):
    cloudinary.add_asset("shop/lamp")  # a public namesake of the authenticated lamp
    with pytest.raises(cloudinary_api.AssetConflict):
        cloudinary_api.rename(LAMP, "shop/lamp", to_type="upload")
    rename = cloudinary.writes[-1]
    assert rename.params["overwrite"] in ("0", "false") and rename.params["invalidate"] in ("1", "true")
    assert rename.params["type"] == "authenticated" and rename.params["to_type"] == "upload"
    assert cloudinary.asset("shop/lamp", type="authenticated") is not None

    moved = cloudinary_api.rename(CHAIR, "archive/chair")
    assert moved["public_id"] == "archive/chair" and cloudinary.asset("shop/chair") is None
    with pytest.raises(cloudinary_api.AssetNotFound):
        cloudinary_api.rename(CHAIR, "archive/chair-2")


def test_destroy_says_ok_then_not_found(cloudinary):
    assert cloudinary_api.destroy(CHAIR) == "ok"
    assert cloudinary_api.destroy(CHAIR) == "not found"
    assert all(call.params["invalidate"] in ("1", "true") for call in cloudinary.writes)


def test_explicit_on_a_vanished_asset_is_asset_not_found(cloudinary):
    cloudinary_api.explicit(LAMP, moderation="manual")
    assert cloudinary.asset("shop/lamp", type="authenticated")["moderation"][-1]["status"] == "pending"
    with pytest.raises(cloudinary_api.AssetNotFound):
        cloudinary_api.explicit(AssetRef("shop/gone"), moderation="manual")


@pytest.mark.parametrize("action", [lambda: cloudinary_api.resource(CHAIR), lambda: cloudinary_api.add_tag("t", CHAIR),
                                    lambda: cloudinary_api.destroy(CHAIR)])
def test_a_rate_limit_is_503(cloudinary, action):
    cloudinary.fail_call(0, Fault("status", 420))
    with pytest.raises(DependencyUnavailable) as caught:
        action()
    assert caught.value.status == 503


def test_every_call_takes_its_timeout_from_the_request_budget(cloudinary, monkeypatch):
    now = [100.0]
    monkeypatch.setattr(budget, "clock", lambda: now[0])
    budget.start(5.0)
    try:
        assert cloudinary_api.timeout("tags/add") == 5.0  # CLOUDINARY_TIMEOUT_SECONDS (8) cut to what is left
        now[0] += 4.5
        with pytest.raises(DependencyUnavailable) as caught:  # 0.5 s left: the call is not started
            cloudinary_api.add_tag("late", CHAIR)
        assert caught.value.code == "out_of_time"
        assert cloudinary.writes == []
    finally:
        budget.finish()
    assert cloudinary_api.timeout() == cloudinary_api.DEFAULT_TIMEOUT_SECONDS  # outside a request: the setting


def test_the_sdk_internal_we_configure_is_where_we_expect_it(cloudinary):
    """shared.cloudinary_api turns off urllib3's read retries on the SDK's Admin API pool (a timed-out GET
    retried three times would take 4x the timeout, past Cloudinary's 20 s). The SDK offers no public setting
    for it: if a release moves ``call_api._http``, this fails and says so, instead of every call silently
    retrying (requirements pin cloudinary>=1.46,<2)."""
    assert cloudinary_api.sdk().api.__name__ == "cloudinary.api"  # the Admin API, set up at its first use
    from cloudinary.api_client import call_api

    pool = getattr(call_api, "_http", None)
    assert pool is not None and hasattr(pool, "connection_pool_kw"), \
        "pycloudinary moved cloudinary.api_client.call_api._http: update shared.cloudinary_api._no_read_retries"
    retries = pool.connection_pool_kw.get("retries")
    assert retries is not None and retries.read == 0 and retries.status == 0


def test_the_upload_and_admin_api_modules_load_only_when_used():
    """Building a URL needs neither API module; writing needs the Upload API's only (a cold start of
    chat_alerts, hello_tag or face_tagging never pays for the Admin API's)."""
    code = ("import json, sys; from shared import cloudinary_api; sdk = cloudinary_api.sdk(); "
            "sdk.cloudinary.utils.cloudinary_url('sample', secure=True); "
            "loaded = lambda: [n for n in ('cloudinary.uploader', 'cloudinary.api') if n in sys.modules]; "
            "steps = [loaded()]; sdk.uploader; steps.append(loaded()); sdk.api; steps.append(loaded()); "
            "from cloudinary.api_client import call_api; "
            "steps.append(call_api._http.connection_pool_kw['retries'].read); print(json.dumps(steps))")
    assert in_a_fresh_process(code, {"CLOUDINARY_URL": "cloudinary://1234:secret@demo"}) == [
        [], ["cloudinary.uploader"], ["cloudinary.uploader", "cloudinary.api"], 0]


def test_the_sdk_sends_the_same_user_agent_without_running_uname_at_import():
    """pycloudinary puts ``platform.platform()`` in its User-Agent when imported, and Python finds that string's
    processor field on Linux by running ``uname -p`` (~7 ms of a cold start). Through ``cloudinary_api.sdk()`` no
    process is started, and the User-Agent Cloudinary receives is the one a plain ``import cloudinary`` makes;
    whoever asks for the processor afterwards gets Python's own answer."""
    def fresh(code: str) -> dict:
        return in_a_fresh_process(code, {"CLOUDINARY_URL": "cloudinary://1234:secret@demo"})

    report = ("import platform; print(json.dumps({'agent': cloudinary.get_user_agent(), "
              "'subprocess': 'subprocess' in sys.modules, 'stored': 'processor' in vars(platform.uname()), "
              "'processor': platform.processor()}))")
    ours = fresh("import json, sys; from shared import cloudinary_api; "
                 f"cloudinary = cloudinary_api.sdk().cloudinary; {report}")
    plain = fresh(f"import json, sys, cloudinary; {report}")

    assert ours["agent"] == plain["agent"]
    assert ours["processor"] == plain["processor"]  # asked afterwards, Python's own answer (the preset is gone)
    if sys.platform.startswith("linux"):  # elsewhere Python's own way is kept (macOS: "arm" beside "arm64")
        assert ours["subprocess"] is False
        assert ours["stored"] is False  # the "" set for the import is not left for others to read
        assert plain["subprocess"] is True  # what it costs otherwise: the import started `uname -p`


def test_threads_that_need_the_sdk_at_once_on_a_cold_start_all_get_it_whole():
    """The local server answers several requests at once: on its first ones, one thread is still importing the SDK
    when others need it. They must wait for the import, not use the half-built module sys.modules already holds
    (that was a 500 "partially initialized module 'cloudinary'" under a burst)."""
    found = at_once_in_fresh_processes(
        "from shared import cloudinary_api",
        "(cloudinary_api.sdk().cloudinary.utils.cloudinary_url('sample', secure=True)[0], "
        "cloudinary_api.sdk().uploader.__name__)",
        env={"CLOUDINARY_URL": "cloudinary://1234:secret@demo"}, processes=8)  # the race shows in most cold starts
    assert found == [["('https://res.cloudinary.com/demo/image/upload/sample', 'cloudinary.uploader')"]] * 8
