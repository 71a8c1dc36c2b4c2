"""Drives the console in a real browser (Debian's Chromium, through
Playwright), for tests/tests/console.rs, as a reviewer would.

Usage: console.py API_URL API_KEY SCREENSHOT_DIR

Signs in with API_KEY, reviews the inbox (which must hold four actions,
one of them with markup in its params): approves the second item from
the keyboard (j, a), rejects the first with a comment, then approves the
rest in bulk; opens the rejected action's page; takes screenshots at a
laptop's and a phone's size; signs out. Prints one JSON line with what it
saw, for the Rust side to check against the API.
"""

import json
import sys

from playwright.sync_api import sync_playwright

API, KEY, SHOTS = sys.argv[1:4]
report = {"errors": [], "dialogs": 0}


def fail(message):
    print(json.dumps({**report, "failed": message}))
    sys.exit(1)


with sync_playwright() as playwright:
    browser = playwright.chromium.launch(
        executable_path="/usr/bin/chromium",
        args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
    )
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    # Console errors other than the first 401 (no session yet), and any
    # dialog (an alert() that markup in the data managed to run).
    page.on(
        "console",
        lambda m: report["errors"].append(m.text)
        if m.type == "error" and "401" not in m.text
        else None,
    )

    report["failed_requests"] = []
    page.on(
        "response",
        lambda r: report["failed_requests"].append([r.url, r.status])
        if r.status >= 400 and not r.url.endswith("/console/session")
        else None,
    )

    def dialog(d):
        report["dialogs"] += 1
        d.dismiss()

    page.on("dialog", dialog)

    page.goto(API + "/console")
    page.wait_for_selector("#sign-in:not([hidden])")
    page.fill("#api-key", KEY)
    page.click("#sign-in button[type=submit]")
    page.wait_for_selector("text=Inbox (4 waiting)")
    page.wait_for_selector("#items .item >> nth=3")
    report["url_after_sign_in"] = page.url
    report["storage"] = page.evaluate(
        "() => JSON.stringify([Object.assign({}, localStorage), Object.assign({}, sessionStorage)])"
    )
    report["document_cookie"] = page.evaluate("() => document.cookie")
    report["key_in_page"] = page.evaluate("(key) => document.documentElement.outerHTML.includes(key)", KEY)

    # The markup in the params is shown as text and runs nothing.
    params = page.locator("#items .params").all_inner_texts()
    report["markup_shown_as_text"] = any("<script>" in p and "onerror" in p for p in params)
    report["injected_images"] = page.locator("#items img").count()
    report["pwned"] = page.evaluate("() => window.__pwned === undefined ? null : window.__pwned")

    page.screenshot(path=f"{SHOTS}/inbox-laptop.png", full_page=True)

    ids = [c.get_attribute("data-id") for c in page.locator("#items .item").all()]
    report["inbox"] = ids

    # Keyboard: next, approve.
    page.click("#view h1")
    page.keyboard.press("j")
    if page.locator("#items .item.current").get_attribute("data-id") != ids[1]:
        fail("j did not move to the second item")
    page.keyboard.press("a")
    page.wait_for_selector("text=Inbox (3 waiting)")
    report["approved_by_keyboard"] = ids[1]

    # Reject the first with a comment.
    first = page.locator(f'#items .item[data-id="{ids[0]}"]')
    first.locator(".comment").fill("Not this one <b>bold</b>")
    first.locator("button.reject").click()
    page.wait_for_selector("text=Inbox (2 waiting)")
    report["rejected"] = ids[0]

    # Bulk: select all, approve.
    page.check("#select-all")
    page.fill("#bulk-comment", "bulk ok")
    page.click("#approve-selected")
    page.wait_for_selector("text=Nothing waits for a decision.")
    report["approved_in_bulk"] = ids[2:]

    # The rejected action's page: its history with the comment, as text.
    page.goto(f"{API}/console#/actions/{ids[0]}")
    page.wait_for_selector("#action-status")
    report["detail_status"] = page.inner_text("#action-status")
    report["detail_has_comment"] = "Not this one <b>bold</b>" in page.inner_text("main")

    # The actions list, on a phone.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{API}/console#/actions")
    page.wait_for_selector("table tbody tr")
    report["phone_overflow"] = page.evaluate(
        "() => document.documentElement.scrollWidth > window.innerWidth"
    )
    page.screenshot(path=f"{SHOTS}/actions-phone.png", full_page=True)

    cookies = [c for c in context.cookies() if c["name"] == "actionhost_session"]
    report["cookie"] = cookies[0] if cookies else None

    page.click("#sign-out")
    page.wait_for_selector("#sign-in:not([hidden])")
    report["signed_out"] = True
    browser.close()

print(json.dumps(report))
