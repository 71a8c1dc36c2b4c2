"""Drives the console's other pages in a real browser (Debian's Chromium,
through Playwright), for tests/tests/console.rs, as an operator and a
reviewer would.

Usage: console_manage.py API_URL API_KEY SCREENSHOT_DIR SETUP_JSON

SETUP_JSON names what the Rust side prepared: the agent and its run of
five email proposals, Ada's proposal (`ada_action`) and contact, the
OAuth2 auth config, and the component to upload with its SHA-256. The
script edits Ada's subject through the schema form (losing its session
midway, and keeping the edit across signing in again) and approves it,
approves the rest of the run in one go, reads the action's revisions and
log, the run and the contact's timeline, uploads a plugin (first with a wrong hash, which
the page refuses), disables, enables and removes it, mints a key and
revokes it, and connects an account through the OAuth2 redirect. It prints
one JSON line with what it saw, for the Rust side to check against the API.
"""

import json
import re
import sys

from playwright.sync_api import sync_playwright

API, KEY, SHOTS, SETUP = sys.argv[1:5]
setup = json.loads(SETUP)
report = {"errors": [], "confirms": 0}




def run(page, context):
    def sign_in():
        page.wait_for_selector("#sign-in:not([hidden])")
        page.fill("#api-key", KEY)
        page.click("#sign-in button[type=submit]")

    page.goto(API + "/console")
    sign_in()
    page.wait_for_selector("text=Inbox (5 waiting)")
    report["nav"] = [a.inner_text() for a in page.locator("header nav a:not([hidden])").all()]

    # Ada's proposal shows the agent's reasoning, as text.
    card = page.locator(f'#items .item[data-id="{setup["ada_action"]}"]')
    card.locator(".reasoning").wait_for()
    report["reasoning"] = card.locator(".reasoning").inner_text()

    # Edit then approve: the form comes from the type's schema, the diff
    # follows the edit.
    card.locator("button.edit").click()
    page.wait_for_selector("#edit-subject")
    page.fill("#edit-subject", "Pricing, edited")
    page.wait_for_selector("#edit-diff .ins")
    report["edit_diff"] = page.inner_text("#edit-diff")
    page.fill(".edit-comment", "a better subject")
    page.screenshot(path=f"{SHOTS}/edit-laptop.png", full_page=True)

    # The session expires mid-edit (the browser drops the cookie): back to
    # sign-in, and after it the edit is still there.
    context.clear_cookies()
    page.click("#approve-edited")
    sign_in()
    page.wait_for_selector("#view:not([hidden]) #edit-subject")
    report["edit_kept"] = page.input_value("#edit-subject")
    page.click("#approve-edited")
    page.wait_for_selector("text=Inbox (4 waiting)")

    # The rest of the run, in one go.
    page.locator("#items .item button", has_text="Approve the whole run").first.click()
    page.wait_for_selector("text=Nothing waits for a decision.")

    # Ada's action: both revisions as a diff, and once it ran, its log.
    for _ in range(60):
        page.goto(f"{API}/console#/actions/{setup['ada_action']}")
        page.wait_for_selector(".revision pre.diff")
        page.wait_for_timeout(300)
        if page.locator("pre.log").count() > 0:
            break
        page.wait_for_timeout(200)
    report["revision_diff"] = page.inner_text(".revision pre.diff")
    report["execution_log"] = page.locator("pre.log").first.inner_text() if page.locator("pre.log").count() else None
    page.screenshot(path=f"{SHOTS}/action-laptop.png", full_page=True)

    # The agent, its runs, one run's reasoning and proposals.
    page.goto(f"{API}/console#/agents")
    page.click(f'a[href="#/agents/{setup["agent"]}"]')
    page.click(f'a[href="#/runs/{setup["run"]}"]')
    page.wait_for_selector("#run-summary")
    report["run_summary"] = page.inner_text("#run-summary")
    report["run_page"] = page.inner_text("#view")

    # Contacts: search, then a contact's timeline.
    page.goto(f"{API}/console#/contacts")
    page.wait_for_selector("#c-q")
    page.fill("#c-q", "ada")
    page.press("#c-q", "Enter")
    page.wait_for_selector(f'a[href="#/contacts/{setup["contact"]}"]')
    report["contacts_found"] = page.locator("table tbody tr").count()
    page.fill("#c-q", "")
    page.press("#c-q", "Enter")
    page.wait_for_selector("text=Contacts (5)")
    page.wait_for_function("() => document.querySelectorAll('table tbody tr').length === 5")
    report["contacts_all"] = page.locator("table tbody tr").count()
    report["contact_markup_as_text"] = "onerror" in page.inner_text("table")
    report["images_in_contacts"] = page.locator("#view img").count()
    report["pwned"] = page.evaluate("() => window.__pwned === undefined ? null : window.__pwned")
    page.fill("#c-q", "ada")
    page.press("#c-q", "Enter")
    page.wait_for_selector("text=Contacts (1)")
    page.click(f'a[href="#/contacts/{setup["contact"]}"]')
    page.wait_for_selector("text=Timeline")
    report["timeline"] = page.inner_text("#view")

    # Plugins: a wrong hash is refused by the page, the right one installs.
    page.goto(f"{API}/console#/plugins")
    page.wait_for_selector("#plugin-file")
    page.set_input_files("#plugin-file", setup["component"])
    page.wait_for_selector(f"text={setup['sha256']}")
    page.fill("#plugin-sha256", "0" * 64)
    page.click("#plugin-send")
    page.wait_for_selector("#plugin-upload .error:not([hidden])")
    report["wrong_hash"] = page.inner_text("#plugin-upload .error")
    report["listed_after_wrong_hash"] = page.locator(f'tr[data-plugin="{setup["plugin"]}"]').count()
    page.fill("#plugin-sha256", setup["sha256"])
    page.click("#plugin-send")
    row = page.locator(f'tr[data-plugin="{setup["plugin"]}"]')
    row.wait_for()
    report["uploaded_state"] = row.locator(".status").inner_text()
    row.locator("button", has_text="Disable").click()
    page.wait_for_selector(f'tr[data-plugin="{setup["plugin"]}"] >> text=disabled')
    page.locator(f'tr[data-plugin="{setup["plugin"]}"] button', has_text="Enable").click()
    page.wait_for_selector(f'tr[data-plugin="{setup["plugin"]}"] .status >> text=active')
    page.set_viewport_size({"width": 390, "height": 844})
    report["phone_overflow_plugins"] = page.evaluate(
        "() => document.documentElement.scrollWidth > window.innerWidth"
    )
    page.screenshot(path=f"{SHOTS}/plugins-phone.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.locator(f'tr[data-plugin="{setup["plugin"]}"] button', has_text="Remove").click()
    page.wait_for_selector(f'tr[data-plugin="{setup["plugin"]}"]', state="detached")

    # Keys: mint one (shown once), then revoke it.
    page.goto(f"{API}/console#/keys")
    page.wait_for_selector("#key-name")
    page.fill("#key-name", "console-minted")
    page.click("#key-mint-send")
    page.wait_for_selector("#minted-key")
    report["minted"] = page.input_value("#minted-key")
    page.click("#minted button:has-text('Done')")
    minted_row = page.locator("tr", has_text="console-minted")
    minted_row.wait_for()
    report["minted_in_page_after_done"] = report["minted"] in page.content()
    minted_row.locator("button", has_text="Revoke").click()
    page.wait_for_selector("tr:has-text('console-minted') >> text=revoked")

    # Accounts: connect through the OAuth2 redirect and back.
    page.goto(f"{API}/console#/accounts")
    config = page.locator(f'tr[data-config="{setup["auth_config"]}"]')
    config.wait_for()
    config.locator("input.entity").fill("console-user")
    config.locator("button.connect").click()
    page.wait_for_url(re.compile(r".*/console\?.*#/accounts$"))
    page.wait_for_selector("tr:has-text('console-user') .status")
    report["account_status"] = page.locator("tr:has-text('console-user') .status").inner_text()
    report["account_return_url"] = page.url

    page.click("#sign-out")
    page.wait_for_selector("#sign-in:not([hidden])")


with sync_playwright() as playwright:
    browser = playwright.chromium.launch(
        executable_path="/usr/bin/chromium",
        args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
    )
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.on(
        "console",
        lambda m: report["errors"].append(m.text)
        if m.type == "error" and "401" not in m.text
        else None,
    )

    def confirm(dialog):
        report["confirms"] += 1
        dialog.accept()

    page.on("dialog", confirm)
    try:
        run(page, context)
    except Exception as err:  # the report says where it stopped, and what the page showed
        report["failed"] = f"{type(err).__name__}: {err}"
        report["page"] = page.inner_text("body")[:3000]
        page.screenshot(path=f"{SHOTS}/failed.png", full_page=True)
        print(json.dumps(report))
        sys.exit(1)
    browser.close()

print(json.dumps(report))

