"""Open every page of the built documentation site in a real headless browser (Chromium through its
WebDriver), as a reader would, and report what is broken:

* a page that logs an error to the browser console;
* an image that does not load;
* an internal link whose target page (or anchor) does not exist;
* the search box not finding ``lstm``.

    bash scripts/check_site.sh            # builds the site, installs selenium, runs this

Needs Debian's ``chromium`` and ``chromium-driver`` (``apt-get install chromium chromium-driver``). Not
part of CI's default path. Exits 1 when anything is broken.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import os
import sys
import threading
import time
import urllib.parse


def serve(site: str) -> tuple[str, http.server.ThreadingHTTPServer]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=site)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/", server


def browser(driver_path: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=opts)


def pages(site: str) -> list[str]:
    out = []
    for d, _, files in os.walk(site):
        for f in files:
            if f == "index.html" and "assets" not in d:
                out.append(os.path.relpath(os.path.join(d, f), site).replace(os.sep, "/"))
    return sorted(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--site", default="site", help="the built site (mkdocs build)")
    ap.add_argument("--driver", default="/usr/bin/chromedriver", help="the Chromium WebDriver")
    args = ap.parse_args(argv)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    base, server = serve(args.site)
    drv = browser(args.driver)
    problems, checked_links, n_images = [], 0, 0
    try:
        for page in pages(args.site):
            url = urllib.parse.urljoin(base, page[: -len("index.html")])
            drv.get(url)
            time.sleep(0.3)
            for entry in drv.get_log("browser"):
                if entry["level"] == "SEVERE":
                    problems.append(f"{page}: console error: {entry['message'][:200]}")
            for src, ok in drv.execute_script(
                    "return Array.from(document.images).map(i => [i.src, i.complete && i.naturalWidth > 0])"):
                n_images += 1
                if not ok:
                    problems.append(f"{page}: image does not load: {src}")
            for href in drv.execute_script("return Array.from(document.querySelectorAll('a[href]')).map(a => a.href)"):
                if not href.startswith(base):
                    continue
                target, _, anchor = href[len(base):].partition("#")
                path = os.path.join(args.site, urllib.parse.unquote(target))
                if os.path.isdir(path):
                    path = os.path.join(path, "index.html")
                checked_links += 1
                if not os.path.exists(path):
                    problems.append(f"{page}: broken link {href}")
                elif anchor and path.endswith(".html"):
                    with open(path, encoding="utf-8") as f:
                        html = f.read()
                    if f'id="{anchor}"' not in html and f"id={anchor}" not in html:
                        problems.append(f"{page}: link to a missing anchor {href}")
        drv.get(base)
        time.sleep(0.5)
        box = drv.find_element(By.CSS_SELECTOR, "input.md-search__input")
        drv.execute_script("document.querySelector('label.md-search__icon, .md-header__button[for=__search]')"
                           "?.click()")
        box.send_keys("lstm")
        found = []
        for _ in range(40):
            time.sleep(0.25)
            found = drv.find_elements(By.CSS_SELECTOR, ".md-search-result__item")
            if found:
                break
        if not found:
            problems.append("search: no result for 'lstm'")
        box.send_keys(Keys.ESCAPE)
    finally:
        drv.quit()
        server.shutdown()
    n_pages = len(pages(args.site))
    print(f"{n_pages} pages, {n_images} images, {checked_links} internal links checked; search 'lstm': "
          f"{len(found)} results")
    for p in problems:
        print("PROBLEM", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
