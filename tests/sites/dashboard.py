"""Drives oct's live dashboard in real headless Chromium (Debian's chromium + chromium-driver)
through Selenium: waits for the turrets, clicks Start, watches the numbers move, keeps a
screenshot, clicks Stop and waits for the report's link. Prints one JSON line of what it saw.

Run: python dashboard.py URL SCREENSHOT.png
"""
import json
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By


def wait(what, f, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = f()
        if v:
            return v
        time.sleep(0.05)
    raise SystemExit("timed out waiting for " + what)


def main():
    url, shot = sys.argv[1], sys.argv[2]
    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        opts.add_argument(a)
    opts.binary_location = "/usr/bin/chromium"
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        driver.get(url)
        text = lambda i: driver.find_element(By.ID, i).text  # noqa: E731
        wait("the turrets (state ready)", lambda: text("state") == "ready")
        driver.find_element(By.ID, "start").click()
        wait("the test to run", lambda: text("state") == "running")
        first = wait("a first interval", lambda: text("rps") not in ("", "–") and text("total"))
        later = wait("the numbers to change", lambda: text("total") != first and text("total"))
        p50 = text("p50")
        driver.save_screenshot(shot)
        driver.find_element(By.ID, "stop").click()
        link = wait("the report link", lambda: driver.find_elements(By.ID, "report-link"))[0]
        href = link.get_attribute("href")
        severe = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        page_errors = driver.execute_script("return window.octErrors")
        print(json.dumps({"first": first, "later": later, "report": href, "p50": p50,
                          "turret": driver.find_element(By.CSS_SELECTOR, "#turrets tbody td").text,
                          "console_errors": severe, "page_errors": page_errors}), flush=True)
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
