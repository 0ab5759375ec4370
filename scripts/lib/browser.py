"""Headless Chromium (Debian's chromium + chromium-driver) via Selenium, and
pixel access to PNGs, for the panel's browser tests and benchmarks."""
import os
import subprocess
import sys

try:
    from selenium import webdriver
except ImportError:  # the pyenv Python does not see Debian's python3-selenium
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "selenium>=4.20,<5"], check=True, timeout=600)
    from selenium import webdriver
from selenium.webdriver.chrome.service import Service

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cbdaemon import png_pixels  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SHOTS = os.path.join(REPO, "images", "out", "screenshots")


def chromium(width=1280, height=900):
    o = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--ignore-certificate-errors", "--window-size=%d,%d" % (width, height),
              "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
              "--no-first-run", "--disable-extensions"):
        o.add_argument(a)
    o.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")), options=o)
    d.set_page_load_timeout(30)
    d.set_script_timeout(60)
    return d


def screenshot(driver, name):
    os.makedirs(SHOTS, exist_ok=True)
    path = os.path.join(SHOTS, name + ".png")
    driver.save_screenshot(path)
    return path


# The one PNG decoder of the test helpers: (width, height, rows, channels).
decode_png = png_pixels


def pixel(png, x, y):
    w, h, rows, ch = png
    return tuple(rows[y][x * ch:x * ch + 3])


def wait(browser, cond, timeout=20, what="condition", poll=0.1, shot="failed-"):
    """Waits for `cond(browser)` to be true; on a timeout, a screenshot named
    after `what` and an AssertionError saying what was waited for."""
    import re
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait
    # a page that re-renders on a timer replaces the elements a condition
    # is reading: such a read is tried again, not a failure
    ignored = (NoSuchElementException, StaleElementReferenceException)
    try:
        return WebDriverWait(browser, timeout, poll_frequency=poll, ignored_exceptions=ignored).until(lambda b: cond(b))
    except TimeoutException:
        screenshot(browser, shot + re.sub(r"\W+", "-", what)[:40])
        raise AssertionError("timed out after %d s waiting for %s" % (timeout, what))
    except Exception:
        screenshot(browser, shot + re.sub(r"\W+", "-", what)[:40])
        raise


def el(browser, css):
    from selenium.webdriver.common.by import By
    return browser.find_element(By.CSS_SELECTOR, css)
