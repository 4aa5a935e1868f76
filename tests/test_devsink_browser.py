"""The dev inbox in a real headless Chromium, as `make run` serves it (`python -m
relance.dev.devsink` on a data folder): the list newest first, a mail's HTML part rendered but never
run, headers folded, the decoded text part, the SMS list, and everything still there after a
restart."""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from selenium.common.exceptions import NoSuchElementException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from relance.dev.serving import free_ports
from tests.browser import browser  # noqa: F401 (the fixture)

CONFIRM_URL = "http://localhost:8000/confirm/eyJsZWFkIjoiMTIzNDU2Nzg5MCIsImtpbmQiOiJjb25maXJtIn0.a1b2c3d4e5f6?lang=fr&x=1"
# Lead-facing HTML with what a hostile (or careless) template could carry: it must show, not run.
HTML_PART = f"""<html><head><title>Confirmez</title></head><body>
<p>Bonjour <b id="name">Zoé</b>, <a id="confirm" href="{CONFIRM_URL}">confirmer</a></p>
<script>document.body.insertAdjacentHTML("beforeend", "<p id=ran>script ran</p>");
try {{ parent.document.title = "taken over"; }} catch (e) {{}}</script>
<img src="data:," onerror="document.body.insertAdjacentHTML('beforeend', '<p id=ran>handler ran</p>')">
</body></html>"""  # noqa: E501


class Inbox:
    """`python -m relance.dev.devsink` on free ports and a folder of its own."""

    def __init__(self, data_dir: Path) -> None:
        self.smtp_port, self.http_port = free_ports(2)
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.env = {
            **os.environ,
            "RELANCE_DATA_DIR": str(data_dir),
            "RELANCE_SMTP_PORT": str(self.smtp_port),
            "RELANCE_MAILSINK_HTTP_PORT": str(self.http_port),
            "RELANCE_SMS_API_TOKEN": "",
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "relance.dev.devsink"],
            cwd=self.env["RELANCE_DATA_DIR"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            assert self.process.poll() is None, "the inbox exited during start-up"
            try:
                if httpx.get(f"{self.url}/api/mails", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the inbox did not answer within 20 s"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=10)

    def send(self, subject: str, *, html: str | None = None, text: str = "Hello.\n") -> None:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = (
            "Relance <hello@relance.localhost>",
            "zoe@example.com",
            subject,
        )
        msg["List-Unsubscribe"] = "<mailto:unsubscribe@relance.localhost>"
        msg.set_content(text, cte="quoted-printable")
        if html:
            msg.add_alternative(html, subtype="html", cte="quoted-printable")
        with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=5) as smtp:
            smtp.send_message(msg)


@pytest.fixture
def inbox(tmp_path):
    (tmp_path / "var").mkdir()
    running = Inbox(tmp_path / "var")
    running.start()
    yield running
    running.stop()


def _subjects(driver) -> list[str]:
    return [td.text for td in driver.find_elements(By.CSS_SELECTOR, "table.mails td.subject")]


def test_the_inbox_in_a_browser(browser, inbox):  # noqa: F811 (the fixture)
    inbox.send("First")
    inbox.send("Second")
    inbox.send(
        "Confirmez votre adresse", html=HTML_PART, text=f"Bonjour Zoé,\nconfirmez : {CONFIRM_URL}\n"
    )
    httpx.post(
        f"{inbox.url}/sms",
        json={
            "to": "+33612345678",
            "from": "Relance",
            "body": "Votre code : 4242",
            "reference": "r1",
        },
        timeout=5,
    ).raise_for_status()
    wait = WebDriverWait(browser, 15)

    # The list: newest first, with who sent it, to whom, what, when; the SMS list below.
    browser.get(inbox.url + "/")
    assert _subjects(browser) == ["Confirmez votre adresse", "Second", "First"]
    headings = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "table.mails thead th")]
    assert headings == ["From", "To", "Subject", "Received"]
    first_row = [
        td.text
        for td in browser.find_elements(By.CSS_SELECTOR, "table.mails tbody tr:first-child td")
    ]
    assert (
        first_row[:2] == ["Relance <hello@relance.localhost>", "zoe@example.com"] and first_row[3]
    )
    sms = [
        td.text
        for td in browser.find_elements(By.CSS_SELECTOR, "table.sms tbody tr:first-child td")
    ]
    assert sms[1:3] == ["+33612345678", "Votre code : 4242"]

    # One mail: headers folded until asked for, the HTML part rendered, the text part decoded.
    browser.find_element(By.LINK_TEXT, "Confirmez votre adresse").click()
    wait.until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "iframe.html-part"))
    )
    title = browser.title
    unsubscribe_header = browser.find_element(By.XPATH, "//details//th[text()='List-Unsubscribe']")
    assert not unsubscribe_header.is_displayed()
    browser.find_element(By.CSS_SELECTOR, "details.headers summary").click()
    wait.until(lambda _: unsubscribe_header.is_displayed())
    assert CONFIRM_URL in browser.find_element(By.CSS_SELECTOR, "pre.text-part").text

    browser.switch_to.frame(browser.find_element(By.CSS_SELECTOR, "iframe.html-part"))
    name = wait.until(expected_conditions.visibility_of_element_located((By.ID, "name")))
    assert name.text == "Zoé"
    assert browser.find_element(By.ID, "confirm").get_attribute("href") == CONFIRM_URL
    with pytest.raises(NoSuchElementException):  # the page is loaded (above): no script ran in it
        browser.find_element(By.ID, "ran")
    browser.switch_to.default_content()
    assert browser.title == title  # nor reached into the inbox page

    # Stopped and started again on the same folder: the same inbox.
    inbox.stop()
    inbox.start()
    browser.get(inbox.url + "/")
    assert _subjects(browser) == ["Confirmez votre adresse", "Second", "First"]
    assert "Votre code : 4242" in browser.find_element(By.CSS_SELECTOR, "table.sms").text
