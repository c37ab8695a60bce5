"""The page with scoped tokens, in headless Chromium: the token handed over in the address (as `rag serve` prints
it) is kept in the tab's session storage and leaves the address bar; a read token sees no upload button and no
Delete; a write token adds a file through the page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.milvus import EncoderInfo, MilvusStore
from connectors.sources import open_sources
from rag.access import TokenStore
from rag.settings import Settings

from .conftest import serve_in_thread
from .test_browser import CARDS, SAMPLES, browser, screenshot  # noqa: F401  (browser: the fixture)

pytestmark = pytest.mark.slow  # a headless Chromium drives a live server
STORED_TOKEN = "return sessionStorage.getItem('rag-token');"


@pytest.fixture(scope="module")
def guarded(settings: Settings, tiny_base, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict]]:
    """The sample corpus served with a read token and a write token (no other way in)."""
    from rag.ingest import ingest

    data = tmp_path_factory.mktemp("browser-access")
    served = Settings(**{**settings.model_dump(), "collection": "samples_access", "data_dir": data})
    with MilvusStore.open(served.milvus_uri, served.collection, encoder_info=EncoderInfo.of(tiny_base)) as store:
        ingest(open_sources([SAMPLES], cache_dir=data), tiny_base, store)
    tokens = {scope: TokenStore(data).add(f"a-{scope}", scope)[1] for scope in ("read", "write")}
    with serve_in_thread(served, tiny_base) as url:
        yield url, tokens


def test_a_read_token_from_the_address_sees_no_upload_and_no_delete(browser, guarded, tmp_path: Path) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, tokens = guarded
    driver = browser
    wait = WebDriverWait(driver, 20)
    driver.get(f"{url}/#token={tokens['read']}")
    wait.until(lambda d: "7 items" in d.find_element(By.ID, "stats").text)
    assert driver.execute_script(STORED_TOKEN) == tokens["read"]
    assert tokens["read"] not in driver.current_url and driver.current_url.rstrip("/") == url
    assert "read-only" in driver.find_element(By.ID, "access").text
    assert not driver.find_element(By.ID, "upload-box").is_displayed()
    driver.find_element(By.ID, "text").send_keys("a red shape")
    driver.find_element(By.ID, "search").click()
    wait.until(lambda d: d.execute_script(CARDS) == 7)
    assert not any(b.is_displayed() for b in driver.find_elements(By.CSS_SELECTOR, "#results .delete"))
    screenshot(driver, "read-token.png")

    driver.refresh()  # the same tab's session keeps the token: not asked again
    wait.until(lambda d: "7 items" in d.find_element(By.ID, "stats").text)

    token_box = driver.find_element(By.ID, "token")
    token_box.clear()
    token_box.send_keys(tokens["write"] + "\n")
    driver.execute_script("document.getElementById('token').dispatchEvent(new Event('change'))")
    wait.until(lambda d: d.find_element(By.ID, "upload-box").is_displayed())
    assert "may add and delete" in driver.find_element(By.ID, "access").text
    picture = SAMPLES / "shapes-red-circle.png"
    copy = tmp_path / "added by the page.png"
    copy.write_bytes(picture.read_bytes())
    driver.find_element(By.ID, "upload").send_keys(str(copy))
    wait.until(lambda d: "done: 1 item(s) added" in d.find_element(By.ID, "status").text)
    wait.until(lambda d: "8 items" in d.find_element(By.ID, "stats").text)
    screenshot(driver, "write-token-upload.png")


def test_without_a_token_the_page_asks_for_one(browser, guarded) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, tokens = guarded
    driver = browser
    driver.get(url + "/")
    WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "token-box").is_displayed())
    assert "bearer token" in driver.find_element(By.ID, "stats").text
    assert not driver.find_element(By.ID, "upload-box").is_displayed()
