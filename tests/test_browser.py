"""The built page in a real headless Chromium (Debian's, driven by Playwright): no failed or
external requests, every toggle shows and hides its target, every <details> opens."""
from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless=new", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def server(project):
    handler = functools.partial(_Quiet, directory=str(project / "public"))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "run scripts/ensure-chromium (make test does)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def test_page_loads_everything_locally_and_toggles_work(server, browser, project):
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    requests, failed, bad_status = [], [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.on("response", lambda r: bad_status.append(r.url) if r.status >= 400 else None)
    page.goto(f"{server}/sd15-image-sizes/", wait_until="networkidle")

    toggles = page.locator("input.toggle")
    ids = [toggles.nth(i).get_attribute("id") for i in range(toggles.count())]
    # what figures.toml hides behind toggles: whole figures, and rows of grid figures
    from pipeline import spec as specmod

    spec = specmod.load(project / "figures.toml")
    expected = {f"toggle-{f.id}": len(list(f.images())) for f in spec.figures if f.toggle}
    expected |= {f"toggle-{f.id}-{r.decoder}": len(f.cells) for f in spec.figures
                 for r in f.rows if r.toggle}
    assert expected and set(ids) == set(expected)
    for tid in ids:
        target = page.locator(f'[data-toggle="{tid}"]')
        assert target.count() == 1
        assert not target.is_visible(), f"{tid}: target shown before the box is ticked"
        page.click(f'label[for="{tid}"]')
        assert page.is_checked(f"#{tid}")
        assert target.is_visible(), f"{tid}: target still hidden after ticking"
        assert target.locator("img").count() == expected[tid]
        page.click(f'label[for="{tid}"]')
        assert not target.is_visible(), f"{tid}: target still shown after unticking"

    details = page.locator("details")
    assert details.count() >= 10
    for i in range(details.count()):
        d = details.nth(i)
        body = d.locator(":scope > :not(summary)").first
        assert not body.is_visible()
        d.locator("summary").click()
        assert body.is_visible()

    # Show everything, load every (lazy) image, and keep a screenshot for people to look at.
    for tid in ids:
        page.click(f'label[for="{tid}"]')
    page.evaluate("document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
    page.wait_for_load_state("networkidle")
    page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    # The whole page is tens of thousands of pixels tall: JPEG encodes it several times faster
    # than PNG, and a loaded two-core CI machine took over Playwright's default 30 s for the PNG.
    shot = project / "build" / "article.jpg"
    page.screenshot(path=str(shot), full_page=True, type="jpeg", quality=70, timeout=180_000)
    assert shot.stat().st_size > 50_000

    assert requests and all(u.startswith(server) for u in requests), \
        [u for u in requests if not u.startswith(server)]
    assert failed == [] and bad_status == []
    shown = {server + src for src in page.eval_on_selector_all("img", "els => els.map(e => e.getAttribute('src'))")}
    assert len(shown) >= 40 and shown <= set(requests)  # every thumbnail was fetched and served


def test_every_figure_renders_and_its_thumbnails_open_the_full_image(server, browser, project):
    from pipeline import spec as specmod

    spec = specmod.load(project / "figures.toml")
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    page.goto(f"{server}/sd15-image-sizes/", wait_until="networkidle")
    for box in page.locator("input.toggle").all():  # show what toggles hide
        page.click(f'label[for="{box.get_attribute("id")}"]')
    page.evaluate("document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
    page.wait_for_load_state("networkidle")
    for fig in spec.figures:
        block = page.locator(f'figure[data-figure="{fig.id}"]')
        assert block.is_visible(), fig.id
        imgs = block.locator("img")
        assert imgs.count() == len(fig.files()), fig.id
        widths = imgs.evaluate_all("els => els.map(e => e.complete ? e.naturalWidth : 0)")
        assert all(w == fig.thumb for w in widths), (fig.id, widths)
    # a plot's thumbnail opens the full-resolution plot
    link = page.locator('figure[data-figure="attention-entropy"] a.thumb')
    href = link.get_attribute("href")
    link.click()
    page.wait_for_load_state("load")
    assert page.url.endswith(href.lstrip("/").split("/", 1)[-1])
    full = page.evaluate("document.images[0].naturalWidth")
    assert full > spec.figure("attention-entropy").thumb


def test_on_a_phone_the_page_never_scrolls_sideways(server, browser):
    """At 390 px wide (a phone) the document is no wider than the viewport: a wide table or
    figure scrolls inside its own box instead of widening the page."""
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(f"{server}/sd15-image-sizes/", wait_until="networkidle")
    for details in page.locator("details").all():  # open everything: nothing hidden may overflow
        details.evaluate("d => d.open = true")
    for box in page.locator("input.toggle").all():
        box.check()
    width = page.evaluate("document.documentElement.scrollWidth")
    wide = page.evaluate("""() => [...document.querySelectorAll('main *')]
        .filter(e => e.getBoundingClientRect().right > 391
                     && !e.closest('.scroll-x, pre, table, .row, figure .grid'))
        .slice(0, 5).map(e => e.tagName + '.' + e.className)""")
    page.close()
    assert width <= 390, (width, wide)


def test_on_a_phone_labels_stay_with_their_images_and_thumbnails_keep_their_size(server, browser):
    """At 390 px: every column heading of a headed grid sits over its own column's images (its
    horizontal centre within the image's span), every thumbnail in a figure's table is shown at
    its own width (one size per figure), and every thumbnail link opens an existing image."""
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(f"{server}/sd15-image-sizes/", wait_until="networkidle")
    for box in page.locator("input.toggle").all():
        box.check()
    misplaced = page.evaluate("""() => [...document.querySelectorAll('.grid.headed')].flatMap(g => {
        const heads = [...g.querySelectorAll('.row.headings .cell')];
        return [...g.querySelectorAll('.row:not(.headings)')].flatMap(row =>
          [...row.querySelectorAll('.cell img')].map((img, i) => {
            const h = heads[i].getBoundingClientRect(), r = img.getBoundingClientRect();
            const mid = (h.left + h.right) / 2;
            return mid >= r.left && mid <= r.right ? null : g.closest('figure').id + ' #' + i;
          })).filter(Boolean);
      })""")
    sizes = page.evaluate("""() => [...document.querySelectorAll('figure table.decoders')].map(t =>
        [t.closest('figure').id, [...new Set([...t.querySelectorAll('img')].map(i =>
          Math.round(i.getBoundingClientRect().width) + '/' + i.getAttribute('width')))]])""")
    headed = page.evaluate("document.querySelectorAll('.grid.headed').length")
    links = page.evaluate("""() => [...document.querySelectorAll('figure a > img')]
        .map(i => i.parentElement.getAttribute('href'))""")
    statuses = {href: page.request.get(f"{server}{href}" if href.startswith("/") else
                                       f"{server}/sd15-image-sizes/{href}").status
                for href in set(links)}
    page.close()
    assert headed and sizes and not misplaced, misplaced
    for fid, shown in sizes:
        assert len(shown) == 1, (fid, shown)  # one width in the figure
        width, attr = shown[0].split("/")
        assert abs(int(width) - int(attr)) <= 2, (fid, shown)  # and the file's own
    assert links and all(code == 200 for code in statuses.values()), statuses


@pytest.mark.parametrize("width", [1000, 390])
def test_axe_finds_no_accessibility_violations(server, browser, width):
    """axe-core (the copy axe-playwright-python ships) on the built page, every <details> open
    so that the contact sheets and provenance tables are checked too, on a desktop and a phone
    (where wide tables scroll in their own box and must take the keyboard's focus)."""
    import json

    import axe_playwright_python

    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto(f"{server}/sd15-image-sizes/", wait_until="networkidle")
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    page.add_script_tag(path=str(Path(axe_playwright_python.__file__).parent / "axe.min.js"))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    problems = [f"{v['id']} ({v['impact']}): {v['help']} — {len(v['nodes'])} nodes, e.g. "
                f"{json.dumps(v['nodes'][0]['target'])}" for v in result["violations"]]
    assert not problems, "\n".join(problems)
    page.close()
