"""The reports page in a real browser (Playwright on Debian's Chromium): a real agent plays a
bulletin, then ward staff open Reports on a desktop and on a phone, choose the period, see the
play counted for their cluster and node, and download the report as CSV and as PDF, whose
contents (the PDF's text read back, Vietnamese diacritics and all) say the same."""
import csv
import datetime as dt
import io
from pathlib import Path
from zoneinfo import ZoneInfo

from playwright.sync_api import expect
from pypdf import PdfReader

from tests.e2e.web import no_horizontal_scroll, overflowing

WAIT_MS = 30_000


def test_a_report_downloads_as_csv_and_pdf(web_system, web):
    system = web_system
    node = system.ok("POST", "/api/v1/nodes", json={"cluster_id": system.cluster["id"],
                                                    "name": "Loa chợ Hàn"})
    system.start_agent(node)
    system.wait(lambda: system.ok("GET", f"/api/v1/nodes/{node['id']}")["online"], 30,
                "the node online")
    bulletin = system.approved_bulletin("Lịch tiêm chủng", "Trạm y tế phường thông báo.")
    system.ok("POST", "/api/v1/broadcasts", json={"bulletin_id": bulletin["id"],
                                                  "targets": {"nodes": [node["id"]]}})
    system.wait(lambda: system.ok("GET", f"/api/v1/playlogs?node={node['id']}")["playlogs"],
                30, "the node's play reported")
    today = dt.datetime.now(ZoneInfo(system.settings.timezone)).date()
    first = today - dt.timedelta(days=1)

    for size in ("desktop", "phone"):
        page = web.page(system, "staff", size)
        web.visit(page, "/reports", "reports")
        page.fill("#r-from", first.isoformat())
        page.fill("#r-to", today.isoformat())
        # the filter is a GET form: a new page, measured once it has loaded (stylesheet and
        # scripts: on a busy machine the check once ran before, and found it overflowing)
        with page.expect_navigation():
            page.click(".reports-filter button[type=submit]")
        area_row = page.locator(f"#area-{system.cluster['id']}")
        expect(area_row).to_have_attribute("data-aired", "1", timeout=WAIT_MS)
        expect(area_row).to_contain_text("Cụm loa chợ Hàn")
        expect(page.locator(f"#node-{node['id']}")).to_contain_text("Loa chợ Hàn")
        page.wait_for_load_state("load")
        assert no_horizontal_scroll(page), (size, overflowing(page))
        web.shot(page, "reports-period")

        with page.expect_download() as got_csv:
            page.click("#download-csv")
        assert got_csv.value.suggested_filename.endswith(".csv")
        rows = list(csv.reader(io.StringIO(
            Path(got_csv.value.path()).read_text(encoding="utf-8-sig"))))
        area = next(r for r in rows if r[0] == "Địa bàn" and r[1] == "Cụm loa chợ Hàn")
        assert area[4:6] == ["1", "1"]  # planned, aired
        assert any(r[0] == "Thiết bị" and node["id"] in r[2] for r in rows)

        with page.expect_download() as got_pdf:
            page.click("#download-pdf")
        assert got_pdf.value.suggested_filename.endswith(".pdf")
        pdf = Path(got_pdf.value.path()).read_bytes()
        assert pdf.startswith(b"%PDF-")
        text = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)
        for words in ("Báo cáo phát thanh", "Cụm loa chợ Hàn", "Loa chợ Hàn",
                      "Biểu đồ kế hoạch và đã phát theo địa bàn"):
            assert words in text, words
