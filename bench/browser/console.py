"""Times the console in Chromium (Debian's, through Playwright), for the
bench's console section.

Usage: console.py API_URL API_KEY EXPECTED_WAITING ROUNDS

Each round opens a fresh browser context (no cache) and measures:
- the first load: bytes transferred (the page, its scripts, styles and
  icon, and the session probe) and the time from navigation to the sign-in
  form ready for a key;
- the inbox: the time from submitting the key to its first page (100
  cards) rendered, with EXPECTED_WAITING actions pending.
Prints one JSON line: lists of the rounds' figures.
"""

import json
import sys
import time

from playwright.sync_api import sync_playwright

API, KEY, WAITING, ROUNDS = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
out = {"first_load_bytes": [], "first_load_ms": [], "inbox_ms": []}

with sync_playwright() as playwright:
    browser = playwright.chromium.launch(
        executable_path="/usr/bin/chromium",
        args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
    )
    for _ in range(ROUNDS):
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        sizes = []

        def finished(request):
            sizes.append(request.sizes()["responseBodySize"] + request.sizes()["responseHeadersSize"])

        page.on("requestfinished", finished)
        started = time.perf_counter()
        page.goto(API + "/console")
        page.wait_for_selector("#sign-in:not([hidden])")
        out["first_load_ms"].append((time.perf_counter() - started) * 1000)
        out["first_load_bytes"].append(sum(sizes))
        page.fill("#api-key", KEY)
        started = time.perf_counter()
        page.click("#sign-in button[type=submit]")
        page.wait_for_selector(f"text=Inbox ({WAITING} waiting)")
        page.wait_for_selector("#items .item >> nth=99")
        out["inbox_ms"].append((time.perf_counter() - started) * 1000)
        context.close()
    browser.close()

print(json.dumps(out))
