"""netlify.toml as Netlify reads it: @netlify/config resolves the file (as a Netlify build does), and Netlify's
redirect matcher (netlify-redirector, as `netlify dev` uses it) routes each webhook path. /webhooks/<name> and
/webhooks/<name>/ are both proxied (status 200, forced) to the function's deployment; nothing else is."""

from __future__ import annotations

import pytest

from devtools import deploy

pytestmark = pytest.mark.platform

NAMES = deploy.function_names()


def target(name: str) -> str:
    netlify = deploy.load_config()["netlify"]
    return netlify.get("targets", {}).get(name) or f"{netlify['base_url'].rstrip('/')}/api/{name}"


def test_netlify_config_resolves_one_proxy_rule_per_function(netlify_routes):
    resolved = netlify_routes([])
    assert resolved["errors"] == []
    assert resolved["configPath"].endswith("/netlify.toml")
    assert resolved["redirects"] == [
        {"from": f"/webhooks/{name}", "query": {}, "to": target(name), "status": 200, "force": True,
         "conditions": {}, "headers": {}}  # a rewrite (proxy), not a redirect, with nothing added on the way
        for name in NAMES]


@pytest.mark.parametrize("suffix", ["", "/"], ids=["path", "trailing-slash"])
def test_every_webhook_path_is_proxied_to_its_function(netlify_routes, suffix):
    paths = [f"/webhooks/{name}{suffix}" for name in NAMES]
    matches = netlify_routes(paths)["matches"]
    for name, path in zip(NAMES, paths, strict=True):
        match = matches[path]
        assert match is not None, f"Netlify does not route {path}"
        assert (match["from"], match["to"], match["status"], match["force"]) == (
            f"/webhooks/{name}", target(name), 200, True), match
        assert match["proxyHeaders"] == {}


def test_no_other_path_reaches_a_function(netlify_routes):
    paths = ["/webhooks", "/webhooks/", "/webhooks/unknown", *(f"/webhooks/{name}/extra" for name in NAMES),
             *(f"/webhooks/{name}x" for name in NAMES), *(f"/api/{name}" for name in NAMES)]
    matches = netlify_routes(paths)["matches"]
    assert {path: match for path, match in matches.items() if match is not None} == {}
