"""shared.coldstart.lasting: the collector paused while an SDK is built, resumed (as it was) after, and what was
built frozen; nested and concurrent blocks resume it once, at the end of the last."""

from __future__ import annotations

import gc
import threading

import pytest

from shared import coldstart
from tests.helpers import in_a_fresh_process


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    calls: list[bool] = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append(gc.isenabled()))
    yield calls
    gc.enable()


def test_the_collector_is_paused_inside_and_resumed_after_the_freeze(frozen):
    gc.enable()
    with coldstart.lasting():
        assert not gc.isenabled()
        assert frozen == []
    assert gc.isenabled() and frozen == [False]  # frozen before the collector runs again


def test_nested_blocks_resume_once_at_the_end_of_the_outer_one(frozen):
    gc.enable()
    with coldstart.lasting():
        with coldstart.lasting():
            pass
        assert not gc.isenabled() and frozen == []
    assert gc.isenabled() and frozen == [False]


def test_a_collector_that_was_off_stays_off(frozen):
    gc.disable()
    with coldstart.lasting():
        pass
    assert not gc.isenabled() and frozen == [False]


def test_an_error_inside_still_resumes_the_collector(frozen):
    gc.enable()
    with pytest.raises(ValueError), coldstart.lasting():
        raise ValueError("an SDK that failed to import")
    assert gc.isenabled()


def test_a_block_that_raised_freezes_nothing(frozen):
    """What a failed build leaves is garbage, and the next request builds it again: frozen each time, a client
    that can never be built (a misconfigured endpoint) grew the process at every request."""
    gc.enable()
    for _ in range(3):
        with pytest.raises(ValueError), coldstart.lasting():
            raise ValueError("an endpoint botocore refuses")
    assert gc.isenabled() and frozen == []
    with coldstart.lasting():
        pass
    assert frozen == [False]  # the next block that succeeds freezes again


def test_a_nested_block_that_raised_spoils_the_freeze_of_the_outer_one(frozen):
    gc.enable()
    with coldstart.lasting(), pytest.raises(ImportError), coldstart.lasting():
        raise ImportError("an SDK that failed to import")
    assert gc.isenabled() and frozen == []


def test_concurrent_blocks_in_two_threads_resume_when_both_ended(frozen):
    gc.enable()
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with coldstart.lasting():
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=other)
    thread.start()
    inside.wait(5)
    with coldstart.lasting():
        pass
    assert not gc.isenabled()  # the other thread's block is still open
    release.set()
    thread.join(5)
    assert gc.isenabled() and frozen == [False]


def test_first_import_builds_a_module_not_loaded_yet_for_good(frozen):
    gc.enable()
    with coldstart.first_import("a_module_nobody_has_imported"):
        assert not gc.isenabled()
    assert gc.isenabled() and frozen == [False]


def test_first_import_of_a_loaded_module_freezes_nothing(frozen):
    """A warm request's own objects must stay collectable: nothing is frozen, the collector never paused."""
    gc.enable()
    with coldstart.first_import("gc"):
        assert gc.isenabled()
    assert frozen == []


# Each SDK a function loads at its first use, in a fresh process: once that use is over, the SDK's objects are
# out of the collector's generations (frozen), so neither later collections nor the interpreter's exit walk them.
FIRST_USES = {
    "slack_sdk (chat_alerts)": (
        "from functions.chat_alerts import services\n"
        "slack = next(s for s in services.SERVICES if s.name == 'slack')\n"
        "try:\n"
        "    services._post_with_slack_sdk(services.Target(slack, 'http://127.0.0.1:9/services/T/B/x'), {}, 1.0)\n"
        "except Exception:\n"
        "    pass  # nothing listens there: the import is what this is about\n"
        "from slack_sdk.webhook import WebhookClient as built\n"),
    "requests (chat_alerts: Teams, Discord)": (
        "from functions.chat_alerts import services\n"
        "teams = next(s for s in services.SERVICES if s.name == 'teams')\n"
        "try:\n"
        "    services._post_with_requests(services.Target(teams, 'http://127.0.0.1:9/x'), {}, 1.0)\n"
        "except Exception:\n"
        "    pass\n"
        "from requests import Session as built\n"),
    "Pillow (face_tagging)": (
        "from functions.face_tagging import images\n"
        "try:\n"
        "    images.check(b'not a JPEG')\n"
        "except Exception:\n"
        "    pass\n"
        "from PIL.JpegImagePlugin import JpegImageFile as built\n"),
    "botocore (the DynamoDB idempotency store, without boto3)": (
        "import sys\n"
        "from shared import idempotency\n"
        "idempotency._DynamoStore('t', 'us-east-1', 'http://127.0.0.1:9', 1.0, 1).client()\n"
        "assert 'boto3' not in sys.modules, 'boto3 imported'\n"
        "from botocore.client import BaseClient as built\n"),
    "python_http_client (eager_email)": (
        "import os\n"
        "from shared import config, sendgrid_api\n"
        "try:\n"
        "    sendgrid_api.post(config.Settings('eager_email', os.environ), 'mail/send', {})\n"
        "except Exception:\n"
        "    pass\n"
        "from python_http_client import Client as built\n"),
}


@pytest.mark.parametrize("use", list(FIRST_USES))
def test_an_sdk_loaded_at_its_first_use_is_built_for_good(use):
    code = FIRST_USES[use] + ("import gc, json\n"
                              "print(json.dumps({'frozen': gc.get_freeze_count() > 1000, "
                              "'collectable': any(o is built for o in gc.get_objects())}))\n")
    found = in_a_fresh_process(code, {"SENDGRID_API_KEY": "SG.test", "SENDGRID_API_HOST": "http://127.0.0.1:9"})
    assert found == {"frozen": True, "collectable": False}


def test_only_the_first_request_freezes(monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append(1))
    monkeypatch.setattr(coldstart, "_settled", False)
    coldstart.settled()
    coldstart.settled()
    assert calls == [1]


def test_a_functions_module_is_built_for_good_once_its_first_request_starts():
    """In a fresh process: the handler's objects are the collector's to walk until the first request, which
    freezes them (a forged request is enough: it starts like any other)."""
    code = ("import gc, json\n"
            "import functions.hello_tag.handler as h\n"
            "before = any(o is h.handle for o in gc.get_objects())\n"
            "answer = h.handler({'requestContext': {'http': {'method': 'POST'}}, 'rawPath': '/',\n"
            "                    'headers': {'content-type': 'application/json', 'x-cld-timestamp': '1',\n"
            "                                'x-cld-signature': 'forged'}, 'body': '{}'}, None)\n"
            "after = any(o is h.handle for o in gc.get_objects())\n"
            "print(json.dumps([answer['statusCode'], before, after]))\n")
    assert in_a_fresh_process(code, {"CLOUDINARY_NOTIFICATION_SECRETS": "a-secret"}) == [401, True, False]


def test_a_client_that_cannot_be_built_freezes_nothing_request_after_request():
    """In a fresh process, as a misconfigured deployment runs: botocore refuses the endpoint (no scheme) at every
    request. Each failed build froze ~29,000 objects (~10 MiB) before; now the frozen count stays put."""
    code = ("import gc, json\n"
            "from shared import aws\n"
            "counts = []\n"
            "for _ in range(3):\n"
            "    try:\n"
            "        aws.client('dynamodb', region='us-east-1', endpoint='localhost:8000')\n"
            "    except ValueError:\n"
            "        counts.append(gc.get_freeze_count())\n"
            "print(json.dumps(counts))\n")
    counts = in_a_fresh_process(code, {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                                       "HOME": "/nonexistent"})
    assert len(counts) == 3 and counts[0] == counts[1] == counts[2], counts
