"""The pages keep working in a real browser (headless Chromium) under the Content-Security-Policy
that forbids inline scripts and styles: htmx polls and posts (with its CSRF header), and the
browser reports no violation, while an injected inline script is blocked."""
from tests.e2e.web import WAIT_MS, login, preview_reading

WATCH = """
window.__csp = [];
window.__swaps = 0;
document.addEventListener('securitypolicyviolation',
    e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
document.addEventListener('htmx:afterSwap', () => { window.__swaps += 1; });
"""


def test_pages_poll_and_post_through_htmx_with_no_policy_violation(app_only, web):
    s = app_only
    province = s.area("Thành phố Hải Phòng", "HP", "province")
    cluster = s.area("Cụm 1", "HP-1", "cluster", province["id"])
    s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa 1"})
    page = web.new_page("desktop", s)
    page.context.add_init_script(WATCH)
    login(page)

    # the dashboard refreshes itself (every 10 s; 2 s in these tests: web.POLL_S)
    page.wait_for_function("() => window.__swaps >= 1", timeout=WAIT_MS)
    assert page.evaluate("window.__csp") == []
    assert page.evaluate("document.querySelectorAll('style').length") == 0

    # the preview is an htmx POST: it passes the CSRF check with the header from <body>
    preview_reading(page)
    assert page.evaluate("window.__csp") == []

    # and what the policy is for: an inline script someone slips in does not run (the browser
    # says so on its console, the one error this test expects)
    web.watch.allow_console.append("Content Security Policy")
    page.evaluate("const el = document.createElement('script');"
                  "el.textContent = 'window.injected = 1';"
                  "document.head.appendChild(el);")
    page.wait_for_function("() => window.__csp.length == 1", timeout=WAIT_MS)
    assert page.evaluate("window.injected") is None
