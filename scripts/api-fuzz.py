#!/usr/bin/env python3
"""Schemathesis against Opora's served OpenAPI document, as a signed-in curator.

Usage: scripts/api-fuzz.py BASE_URL [--max-examples N]

Signs `curator16` in through the login form (password, then the TOTP enrolment with a code
computed from the enrolment page's secret), takes the API's CSRF token from /api/v1/me and
runs `schemathesis run BASE_URL/api/v1/openapi.json` with the session cookie and the token;
then `schemathesis run BASE_URL/ingest/v1/openapi.json` with the demo integration key.
Checks: no 5xx, every status and content type documented, every body as its schema says.
Prints the number of requests sent and exits non-zero on any failure, or if fewer than
1,000 requests went to the JSON API or fewer than 500 to the ingestion API.
"""

import base64
import hmac
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar

PASSWORD = "opora-demo-2026"
LOGIN = "curator16"
# The demo's ingestion key (public, like the demo password; `opora serve --demo` registers it).
INGEST_KEY = "opk_demo_zastupnik_2026"
MIN_REQUESTS = 1000
MIN_INGEST_REQUESTS = 500


def totp(secret_b32: str, at: float) -> str:
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    digest = hmac.new(key, struct.pack(">Q", int(at) // 30), "sha1").digest()
    offset = digest[-1] & 15
    code = (struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF) % 1_000_000
    return f"{code:06d}"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def main() -> int:
    base = sys.argv[1].rstrip("/")
    max_examples = "40"
    if "--max-examples" in sys.argv:
        max_examples = sys.argv[sys.argv.index("--max-examples") + 1]
    jar = CookieJar()
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(jar), NoRedirect()
    )

    def get(path: str) -> str:
        with opener.open(base + path) as response:
            return response.read().decode()

    def post(path: str, fields: dict) -> str:
        data = urllib.parse.urlencode(fields).encode()
        try:
            opener.open(base + path, data)
        except urllib.error.HTTPError as redirect:  # 303: the next step
            return redirect.headers.get("Location", "")
        return ""

    csrf = lambda page: re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    page = get("/vhod")
    step = post("/vhod", {"login": LOGIN, "password": PASSWORD, "csrf": csrf(page)})
    if step == "/vhod/kod/podklyuchenie":
        page = get(step)
        secret = re.search(r'<code id="secret">([^<]+)</code>', page).group(1)
        step = post(step, {"code": totp(secret, time.time()), "csrf": csrf(page)})
    if not step or step.startswith("/vhod"):
        print(f"api-fuzz: {LOGIN} could not sign in (sent to {step!r})")
        return 1
    token = json.loads(get("/api/v1/me"))["csrf_token"]
    cookie = "; ".join(f"{c.name}={c.value}" for c in jar)

    failed = False
    for name, document, headers, least in [
        (f"the JSON API as {LOGIN}", "/api/v1/openapi.json",
         [f"Cookie: {cookie}", f"X-CSRF-Token: {token}"], MIN_REQUESTS),
        ("the ingestion API with the demo integration key", "/ingest/v1/openapi.json",
         [f"Authorization: Bearer {INGEST_KEY}"], MIN_INGEST_REQUESTS),
    ]:
        requests, ok = schemathesis(base, document, headers, max_examples)
        print(f"api-fuzz: schemathesis sent {requests} requests to {name}")
        if requests < least:
            print(f"api-fuzz: fewer than {least} requests to {name}")
            failed = True
        failed |= not ok
    if failed:
        print("api-fuzz: failed (above)")
        return 1
    return 0


def schemathesis(base: str, document: str, headers: list, max_examples: str):
    """One schemathesis run over a served OpenAPI document: (requests sent, passed)."""
    with tempfile.TemporaryDirectory() as out:
        har = os.path.join(out, "requests.har")
        command = [
            "schemathesis", "run", f"{base}{document}",
            "--url", base,
            "--checks", "not_a_server_error,status_code_conformance,"
                        "content_type_conformance,response_schema_conformance",
            "--phases", "examples,coverage,fuzzing",
            "--max-examples", max_examples,
            "--workers", "2",
            "--request-timeout", "30",
            "--seed", "1",
            "--report", "har", "--report-har-path", har,
        ]
        for header in headers:
            command += ["-H", header]
        result = subprocess.run(command)
        with open(har) as f:
            requests = len(json.load(f)["log"]["entries"])
    return requests, result.returncode == 0


if __name__ == "__main__":
    sys.exit(main())
