"""The pages keep working in a real browser (headless Chromium) under the Content-Security-Policy
that forbids inline scripts and styles: htmx polls and posts (with its CSRF header), and the
browser reports no violation, while an injected inline script is blocked."""
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.support.ui import WebDriverWait

from tests.e2e.test_web_ui import _login, preview_reading

WATCH = """
window.__csp = [];
window.__swaps = 0;
document.addEventListener('securitypolicyviolation',
    e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
document.addEventListener('htmx:afterSwap', () => { window.__swaps += 1; });
"""


def test_pages_poll_and_post_through_htmx_with_no_policy_violation(app_only, browser):
    s = app_only
    province = s.area("Thành phố Hải Phòng", "HP", "province")
    cluster = s.area("Cụm 1", "HP-1", "cluster", province["id"])
    s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa 1"})
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": WATCH})
    wait = WebDriverWait(browser, 20, poll_frequency=0.2,
                         ignored_exceptions=[StaleElementReferenceException])
    _login(s, browser)

    # the dashboard refreshes itself every 5 s
    wait.until(lambda b: b.execute_script("return window.__swaps") >= 1)
    assert browser.execute_script("return window.__csp") == []
    assert browser.execute_script("return document.querySelectorAll('style').length") == 0

    # the preview is an htmx POST: it passes the CSRF check with the header from <body>
    preview_reading(s, browser, wait)
    assert browser.execute_script("return window.__csp") == []

    # and what the policy is for: an inline script someone slips in does not run
    browser.execute_script("const el = document.createElement('script');"
                           "el.textContent = 'window.injected = 1';"
                           "document.head.appendChild(el);")
    wait.until(lambda b: b.execute_script("return window.__csp.length") == 1)
    assert browser.execute_script("return window.injected") is None
