"""shared.config: environment variables read per request, with clear errors that name the variable."""

from __future__ import annotations

import pytest

from shared import config
from shared.errors import ConfigError


def error_detail(call) -> str:
    with pytest.raises(ConfigError) as caught:
        call()
    assert caught.value.status == 500 and caught.value.code == "not_configured"
    # the caller sees a generic sentence; the log_detail (for the log only) says what is wrong
    assert caught.value.log_detail and caught.value.log_detail not in caught.value.message
    return caught.value.log_detail


# --- flag --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "Yes", "on", " 1 ", "\ttrue\n"])
def test_flag_yes(raw):
    assert config.flag("X", environ={"X": raw}) is True
    assert config.flag("X", default=True, environ={"X": raw}) is True


@pytest.mark.parametrize("raw", ["0", "false", "False", "no", "OFF", "", "   "])
def test_flag_no(raw):
    assert config.flag("X", default=True, environ={"X": raw}) is False


@pytest.mark.parametrize("raw", ["2", "maybe", "y", "n", "enabled", "1.0", "truee"])
def test_flag_unclear_is_a_config_error_naming_the_variable(raw):
    assert "DRY_RUN" in error_detail(lambda: config.flag("DRY_RUN", environ={"DRY_RUN": raw}))


def test_flag_default_when_unset():
    assert config.flag("X", environ={}) is False
    assert config.flag("X", default=True, environ={}) is True


def test_flag_reads_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("SOME_FLAG_FOR_TEST", "yes")
    assert config.flag("SOME_FLAG_FOR_TEST") is True
    monkeypatch.setenv("SOME_FLAG_FOR_TEST", "no")  # read again, not cached
    assert config.flag("SOME_FLAG_FOR_TEST") is False


# --- integer / number ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "value"), [("7", 7), (" 42 ", 42), ("0", 0), ("007", 7)])
def test_integer(raw, value):
    assert config.integer("N", 5, environ={"N": raw}) == value


@pytest.mark.parametrize("raw", ["", "  "])
def test_integer_default_when_blank_or_unset(raw):
    assert config.integer("N", 5, environ={"N": raw}) == 5
    assert config.integer("N", 5, environ={}) == 5


@pytest.mark.parametrize("raw", ["1.5", "ten", "1e3", "0x10"])
def test_integer_not_a_whole_number(raw):
    assert "N must be a whole number" in error_detail(lambda: config.integer("N", 5, environ={"N": raw}))


def test_integer_minimum():
    assert "at least 1" in error_detail(lambda: config.integer("N", 5, environ={"N": "0"}, minimum=1))
    assert "at least 0" in error_detail(lambda: config.integer("N", 5, environ={"N": "-3"}))
    assert config.integer("N", 5, environ={"N": "1"}, minimum=1) == 1


@pytest.mark.parametrize(("raw", "value"), [("0.2", 0.2), ("8", 8.0), (" 1.5 ", 1.5)])
def test_number(raw, value):
    assert config.number("T", 3.0, environ={"T": raw}) == value


@pytest.mark.parametrize("raw", ["fast", "1,5", "nan", "inf", "-inf", "NaN"])
def test_number_must_be_a_finite_number(raw):
    assert "T must be a number" in error_detail(lambda: config.number("T", 3.0, environ={"T": raw}))


def test_number_default():
    assert config.number("T", 3.0, environ={}) == 3.0
    assert config.number("T", 3.0, environ={"T": " "}) == 3.0


# --- word_list -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "words"), [
    ("a@x.com b@y.com", ["a@x.com", "b@y.com"]),
    ("a@x.com,b@y.com", ["a@x.com", "b@y.com"]),
    ("a@x.com, b@y.com ,c@z.com", ["a@x.com", "b@y.com", "c@z.com"]),
    ("  a@x.com\n\tb@y.com  ", ["a@x.com", "b@y.com"]),
    (",,a@x.com,,", ["a@x.com"]),
    ("", []),
    (" , ", []),
])
def test_word_list(raw, words):
    assert config.word_list(raw) == words


# --- cloudinary_credentials / signing_secrets ----------------------------------------------------------

def test_cloudinary_credentials():
    env = {"CLOUDINARY_URL": "cloudinary://614335564976464:abc-DEF_123@demo-cloud"}
    assert config.cloudinary_credentials(env) == ("demo-cloud", "614335564976464", "abc-DEF_123")


def test_cloudinary_credentials_with_sdk_settings_in_the_query_string():
    env = {"CLOUDINARY_URL": "cloudinary://key:secret@cloud?upload_prefix=http://127.0.0.1:9&secure=true"}
    assert config.cloudinary_credentials(env) == ("cloud", "key", "secret")


def test_cloudinary_credentials_percent_encoded_secret():
    assert config.cloudinary_credentials({"CLOUDINARY_URL": "cloudinary://key:se%2Fcr%40t@cloud"}) \
        == ("cloud", "key", "se/cr@t")


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_cloudinary_credentials_unset(raw):
    env = {} if raw is None else {"CLOUDINARY_URL": raw}
    assert config.cloudinary_credentials(env) is None


@pytest.mark.parametrize("raw", [
    "https://key:secret@cloud", "cloudinary://key@cloud", "cloudinary://key:@cloud", "cloudinary://:secret@cloud",
    "cloudinary://cloud", "key:secret@cloud", "cloudinary://key:secret@",
])
def test_cloudinary_credentials_malformed_never_echoes_the_value(raw):
    detail = error_detail(lambda: config.cloudinary_credentials({"CLOUDINARY_URL": raw}))
    assert "CLOUDINARY_URL must look like" in detail
    assert "secret" not in detail.replace("API_SECRET", "")


def test_cloudinary_credentials_reads_os_environ(monkeypatch):
    monkeypatch.setenv("CLOUDINARY_URL", "cloudinary://k:s@c")
    assert config.cloudinary_credentials() == ("c", "k", "s")


def test_signing_secrets_from_cloudinary_url_then_rotation_list():
    env = {"CLOUDINARY_URL": "cloudinary://key:current@cloud",
           "CLOUDINARY_NOTIFICATION_SECRETS": " previous , older,, "}
    assert config.signing_secrets(env) == ["current", "previous", "older"]


def test_signing_secrets_from_the_list_alone():
    assert config.signing_secrets({"CLOUDINARY_NOTIFICATION_SECRETS": "only"}) == ["only"]


def test_signing_secrets_none():
    assert config.signing_secrets({}) == []
    assert config.signing_secrets({"CLOUDINARY_NOTIFICATION_SECRETS": " , "}) == []


def test_signing_secrets_malformed_url_is_an_error_not_an_empty_list():
    with pytest.raises(ConfigError):
        config.signing_secrets({"CLOUDINARY_URL": "not a url", "CLOUDINARY_NOTIFICATION_SECRETS": "x"})


def test_signing_secrets_reads_os_environ(monkeypatch):
    monkeypatch.setenv("CLOUDINARY_NOTIFICATION_SECRETS", "from-env")
    assert config.signing_secrets() == ["from-env"]


def test_demo_mode():
    assert config.demo_mode({}) is False
    assert config.demo_mode({config.DEMO_MODE_VAR: "1"}) is True
    assert config.DEMO_MODE_VAR == "CLOUDINARY_WEBHOOKS_DEMO"


# --- Settings ------------------------------------------------------------------------------------------

def test_settings_get_strips_and_falls_back_to_the_default():
    settings = config.Settings("fn", {"A": " value ", "BLANK": "  "})
    assert settings.get("A") == "value"
    assert settings.get("BLANK") is None
    assert settings.get("BLANK", "d") == "d"
    assert settings.get("MISSING", "d") == "d"


def test_settings_demo_values_stand_in_for_missing_settings_only():
    settings = config.Settings("fn", {"A": "real"}, demo_values={"A": "demo-a", "B": "demo-b"})
    assert settings.get("A") == "real"
    assert settings.get("B") == "demo-b"
    assert settings.require("B") == "demo-b"


def test_settings_require_names_function_and_variable_in_the_log_detail():
    settings = config.Settings("eager_email", {"EMPTY": ""})
    for name in ("MISSING", "EMPTY"):
        detail = error_detail(lambda name=name: settings.require(name))
        assert detail == f"eager_email: environment variable {name} is not set"


def test_settings_typed_reads_use_its_own_environment():
    settings = config.Settings("fn", {"F": "yes", "N": "3", "T": "0.5"})
    assert settings.flag("F") is True and settings.flag("OTHER", default=True) is True
    assert settings.integer("N", 1) == 3 and settings.integer("OTHER", 9) == 9
    assert settings.number("T", 1.0) == 0.5
    with pytest.raises(ConfigError):
        config.Settings("fn", {"N": "0"}).integer("N", 1, minimum=1)


def test_settings_choice():
    settings = config.Settings("fn", {"MODE": " Strict "}, demo_values={"DEMO_MODE": "lenient"})
    assert settings.choice("MODE", "lenient", ("strict", "lenient")) == "strict"
    assert settings.choice("UNSET", "lenient", ("strict", "lenient")) == "lenient"
    assert settings.choice("DEMO_MODE", "strict", ("strict", "lenient")) == "lenient"
    detail = error_detail(lambda: config.Settings("fn", {"MODE": "wild"}).choice("MODE", "strict",
                                                                                ("strict", "lenient")))
    assert detail == "fn: MODE must be one of strict, lenient"


def test_settings_read_the_mapping_live():
    environ = {"A": "1"}
    settings = config.Settings("fn", environ)
    environ["A"] = "2"
    assert settings.get("A") == "2"


@pytest.mark.parametrize("url", ["cloudinary://k:%20@demo", "cloudinary://k:%20%20%09@demo", "cloudinary://k:%00@demo",
                                 "cloudinary://k:abc%00def@demo", "cloudinary://k:ab%0Acd@demo",
                                 "cloudinary://%20:secret@demo"])
def test_a_blank_or_control_character_secret_in_cloudinary_url_is_not_configured(url):
    with pytest.raises(ConfigError):
        config.cloudinary_credentials({"CLOUDINARY_URL": url})
    with pytest.raises(ConfigError):
        config.signing_secrets({"CLOUDINARY_URL": url})


@pytest.mark.parametrize("extra", [" ", "\x00", "ab\ncd", "\t", " , \x7f"])
def test_unusable_rotation_secrets_are_dropped(extra):
    assert config.signing_secrets({"CLOUDINARY_NOTIFICATION_SECRETS": extra}) == []
    assert config.signing_secrets({"CLOUDINARY_NOTIFICATION_SECRETS": f"{extra},good"}) == ["good"]


def test_parsed_once_parses_each_value_once_and_sees_every_change(monkeypatch):
    parses = []

    def parse():
        parses.append(1)
        return config.integer("PARSED_ONCE_PROBE", 7)

    monkeypatch.delenv("PARSED_ONCE_PROBE", raising=False)
    assert [config.parsed_once("probe", ("PARSED_ONCE_PROBE",), parse) for _ in range(3)] == [7, 7, 7]
    assert len(parses) == 1  # an unchanged environment is parsed once
    monkeypatch.setenv("PARSED_ONCE_PROBE", "12")
    assert config.parsed_once("probe", ("PARSED_ONCE_PROBE",), parse) == 12 and len(parses) == 2
    monkeypatch.setenv("PARSED_ONCE_PROBE", "twelve")
    for _ in range(2):  # a value that does not parse is not kept: it fails every time, clearly
        with pytest.raises(ConfigError):
            config.parsed_once("probe", ("PARSED_ONCE_PROBE",), parse)
    monkeypatch.delenv("PARSED_ONCE_PROBE")
    assert config.parsed_once("probe", ("PARSED_ONCE_PROBE",), parse) == 7
