"""Drives the site tracker in a real browser (Debian's Chromium, through
Playwright), for tests/tests/tracker.rs.

Usage: tracker.py API_URL ADMIN_KEY SITE_URL OTHER_SITE_URL

On SITE_URL (whose origin the publishable key allows): loads /index.html,
follows its link to /pricing.html, then navigates with history.pushState to /features,
waiting after each step until the server has the pageview; then calls
actionhost.identify("ada@example.com") and waits until the visitor's events
belong to that contact. On OTHER_SITE_URL (an origin the key does not list):
loads /index.html and gives its beacon time to arrive. Prints one JSON line:
the two visitors' anonymous ids, the contact's id, and the status of every
/v1/track request the browser reported.
"""

import json
import sys
import time
import urllib.parse
import urllib.request

from playwright.sync_api import sync_playwright

API, KEY, SITE, OTHER = sys.argv[1:5]


def api(path):
    request = urllib.request.Request(API + path, headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def wait_until(what, check, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def visitor_events(anonymous_id):
    query = urllib.parse.urlencode({"anonymous_id": anonymous_id, "limit": 100, "sort_dir": "asc"})
    return api(f"/v1/events?{query}")["events"]


statuses = []
with sync_playwright() as playwright:
    browser = playwright.chromium.launch(
        executable_path="/usr/bin/chromium",
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    )
    context = browser.new_context()
    context.on(
        "response",
        lambda response: statuses.append([response.url, response.status])
        if "/v1/track" in response.url
        else None,
    )
    page = context.new_page()
    page.goto(SITE + "/index.html")
    page.wait_for_function("window.actionhost && typeof window.actionhost.identify === 'function'")
    visitor = page.evaluate("actionhost.anonymousId()")
    wait_until("the first pageview", lambda: len(visitor_events(visitor)) >= 1)

    page.click("#pricing")
    page.wait_for_url("**/pricing.html")
    page.wait_for_function("window.actionhost && typeof window.actionhost.identify === 'function'")
    same = page.evaluate("actionhost.anonymousId()")
    if same != visitor:
        raise SystemExit(f"the anonymous id changed between pages: {visitor} then {same}")
    wait_until("the second pageview", lambda: len(visitor_events(visitor)) >= 2)

    page.evaluate("history.pushState({}, '', '/features')")
    wait_until("the pushState pageview", lambda: len(visitor_events(visitor)) >= 3)

    page.evaluate("actionhost.identify('ada@example.com')")

    def linked():
        events = visitor_events(visitor)
        owners = {event.get("contact_id") for event in events}
        if len(events) == 3 and len(owners) == 1 and None not in owners:
            return owners.pop()
        return None

    contact = wait_until("the identify", linked)

    other = context.new_page()
    other.goto(OTHER + "/index.html")
    other.wait_for_function("window.actionhost && typeof window.actionhost.identify === 'function'")
    stranger = other.evaluate("actionhost.anonymousId()")
    # The refused beacon has nothing to wait for on the server: give it time.
    time.sleep(1.5)
    browser.close()

print(json.dumps({"visitor": visitor, "contact_id": contact, "stranger": stranger, "statuses": statuses}))
