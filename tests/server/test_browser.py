"""The web page end to end in headless Chromium (Debian's chromium and chromium-driver; `make browser` installs them).

Over the sample corpus (examples/corpus) with the tiny parity encoder: types a query, drops an
image on the drop zone, and waits for the result thumbnails; then asks and waits for the answer
panel; filters, fails, and reads the API docs; then asks an LLM (the fake one) and watches the answer
stream in, the citations and their check after it, and an answer that breaks off. The browser has no network: no
host name resolves but the test server's address, so the page and /docs must need nothing from elsewhere.
Screenshots go to tests/artifacts/ (ignored by git).
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.milvus import EncoderInfo, MilvusStore
from connectors.sources import open_sources
from rag.ingest import ingest
from rag.settings import Settings
from tests.helpers.llm import FakeLLMServer, Reply

from .conftest import serve_in_thread

pytestmark = pytest.mark.slow  # a headless Chromium drives a live server

SAMPLES = Path(__file__).resolve().parents[2] / "examples" / "corpus"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # offline: no name resolves (CDNs included)
]
# A CDN request as the default FastAPI docs page makes it; offline, it must fail.
CDN_FETCH = """
const done = arguments[arguments.length - 1];
fetch("https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css", { mode: "no-cors" })
  .then(() => done("reached"), () => done("unreachable"));
"""
CARDS = "return document.querySelectorAll('#results .card').length;"
DROP = """
const [name, data] = arguments;
const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
const transfer = new DataTransfer();
transfer.items.add(new File([bytes], name, { type: "image/png" }));
const zone = document.getElementById("drop");
zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: transfer, bubbles: true, cancelable: true }));
zone.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
"""
LOADED_THUMBNAILS = """
const images = [...document.querySelectorAll("#results .card .thumb img")];
return images.filter((img) => img.complete && img.naturalWidth > 0).length;
"""

logger = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def samples_server(settings: Settings, tiny_base) -> Iterator[str]:
    """The app over the sample corpus, ingested into its own collection."""
    samples = Settings(**{**settings.model_dump(), "collection": "samples"})
    with MilvusStore.open(samples.milvus_uri, "samples", encoder_info=EncoderInfo.of(tiny_base)) as store:
        report = ingest(open_sources([SAMPLES], cache_dir=samples.data_dir), tiny_base, store)
    assert report.added == len(list(SAMPLES.glob("*.json"))) and not report.skipped
    with serve_in_thread(samples, tiny_base) as url:
        yield url


@pytest.fixture
def browser() -> Iterator[object]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(f"{CHROMIUM} or {CHROMEDRIVER} is missing: `make browser` installs Debian's chromium packages")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="rag-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    logger.warning("screenshot saved: %s", path)
    return path


def test_search_page_shows_thumbnails_for_a_composed_query(browser, samples_server: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    wait = WebDriverWait(driver, 20)
    driver.get(samples_server + "/")
    wait.until(lambda d: "7 items" in d.find_element(By.ID, "stats").text)

    caption = json.loads((SAMPLES / "shapes-red-circle.json").read_text())["text"]
    driver.find_element(By.ID, "text").send_keys(caption)
    picture = SAMPLES / "shapes-red-circle.png"
    driver.execute_script(DROP, picture.name, base64.b64encode(picture.read_bytes()).decode())
    assert driver.find_element(By.ID, "preview").is_displayed()
    driver.find_element(By.ID, "search").click()

    wait.until(lambda d: d.execute_script(LOADED_THUMBNAILS) == 7)
    top = driver.find_element(By.CSS_SELECTOR, "#results .card")
    assert top.find_element(By.CSS_SELECTOR, ".text").text == caption
    assert top.find_element(By.CSS_SELECTOR, ".score").text == "1.0000"
    assert "7 results · composed-to-multimodal" in driver.find_element(By.ID, "status").text
    assert screenshot(driver, "search-page.png").stat().st_size > 10_000

    driver.find_element(By.ID, "filter").send_keys("tags=shape")
    driver.find_element(By.ID, "ask").click()
    wait.until(lambda d: d.find_element(By.ID, "answer-text").text)
    wait.until(lambda d: d.execute_script(LOADED_THUMBNAILS) == 4)
    answer = driver.find_element(By.ID, "answer-text").text
    assert answer.startswith("No LLM is configured") and answer.splitlines()[1].startswith(
        "[1] shapes-red-circle.png: "
    )
    assert str(SAMPLES) not in driver.find_element(By.TAG_NAME, "body").text  # names, not the server's paths
    screenshot(driver, "ask-page.png")


def test_filters_read_as_on_the_command_line_and_an_error_clears_the_results(browser, samples_server: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    wait = WebDriverWait(driver, 20)
    driver.get(samples_server + "/")
    wait.until(lambda d: "7 items" in d.find_element(By.ID, "stats").text)
    assert driver.find_element(By.ID, "top-k").get_attribute("placeholder") == "10"  # the server's RAG_TOP_K
    driver.find_element(By.ID, "text").send_keys("a red shape")
    driver.find_element(By.ID, "filter").send_keys("tags=red, tags=bridge")  # a repeated key: any of its values
    driver.find_element(By.ID, "ask").click()
    wait.until(lambda d: d.execute_script(LOADED_THUMBNAILS) == 3)
    names = sorted(e.text for e in driver.find_elements(By.CSS_SELECTOR, "#results .card .source"))
    assert names == ["mid-hudson-bridge.jpg", "shapes-red-circle.png", "shapes-red-square.png"]
    assert driver.find_element(By.ID, "answer").is_displayed()
    screenshot(driver, "filter-any-of.png")

    driver.find_element(By.ID, "filter").clear()
    driver.find_element(By.ID, "filter").send_keys("tags")
    driver.find_element(By.ID, "search").click()
    wait.until(lambda d: "write key=value pairs" in d.find_element(By.ID, "status").text)
    assert "error" in driver.find_element(By.ID, "status").get_attribute("class")
    assert driver.execute_script(CARDS) == 0 and not driver.find_element(By.ID, "answer").is_displayed()
    screenshot(driver, "error-clears-results.png")


def test_the_api_docs_work_offline(browser, samples_server: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    driver.set_script_timeout(20)
    driver.get(samples_server + "/docs")
    assert driver.execute_async_script(CDN_FETCH) == "unreachable"  # the browser really is offline
    wait = WebDriverWait(driver, 20)
    wait.until(
        lambda d: (
            "mmrag" in d.execute_script("return document.querySelector('.swagger-ui .info .title')?.textContent || ''")
        )
    )
    paths = {e.text for e in driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert {"/api/search", "/api/ask", "/api/stats"} <= paths, paths
    screenshot(driver, "docs-offline.png")


def test_the_blend_control_reaches_the_search(browser, samples_server: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    wait = WebDriverWait(driver, 20)
    driver.get(samples_server + "/")
    wait.until(lambda d: "7 items" in d.find_element(By.ID, "stats").text)
    driver.find_element(By.ID, "text").send_keys("a red circle")
    driver.find_element(By.ID, "blend").send_keys("fused=3, image=1, bm25=1")
    driver.find_element(By.ID, "search").click()
    wait.until(lambda d: "blend" in d.find_element(By.ID, "status").text)
    status = driver.find_element(By.ID, "status").text
    assert "blend fused 0.60 + image 0.20 + bm25 0.20" in status and "scores: weighted" in status
    assert "7 results" in status and "error" not in driver.find_element(By.ID, "status").get_attribute("class")
    screenshot(driver, "blend-search.png")

    driver.find_element(By.ID, "blend").clear()
    driver.find_element(By.ID, "blend").send_keys("fused=-1")
    driver.find_element(By.ID, "search").click()
    wait.until(lambda d: "weights must be 0 or more" in d.find_element(By.ID, "status").text)


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


@pytest.fixture(scope="module")
def answering_server(samples_server: str, settings: Settings, tiny_base, llm: FakeLLMServer) -> Iterator[str]:
    """The app over the sample corpus (ingested by ``samples_server``), answering with the fake LLM."""
    answering = Settings(
        **{**settings.model_dump(), "collection": "samples", "llm_model": "vision-test", "llm_base_url": llm.url}
    )
    with serve_in_thread(answering.model_copy(update={"llm_max_retries": 0}), tiny_base) as url:
        yield url


def test_the_answer_streams_into_the_page_then_its_citations_and_their_check(
    browser, answering_server: str, llm: FakeLLMServer
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    wait = WebDriverWait(driver, 30)
    reply = Reply("A red circle [1]. A square [9]. Nothing else here.", hold_after=4)
    llm.replies[:] = [reply]
    driver.get(answering_server + "/")
    wait.until(lambda d: "answers by vision-test" in d.find_element(By.ID, "stats").text)
    driver.find_element(By.ID, "text").send_keys("a red shape")
    driver.find_element(By.ID, "filter").send_keys("tags=shape")
    driver.find_element(By.ID, "ask").click()

    # Four tokens are on the page while the LLM holds back the rest: the page renders as it reads the stream.
    wait.until(lambda d: d.find_element(By.ID, "answer-text").text.rstrip() == "A red circle [1].")
    assert "streaming" in driver.find_element(By.ID, "answer").get_attribute("class")
    assert driver.execute_script(CARDS) == 0
    screenshot(driver, "ask-streaming.png")
    reply.release.set()

    wait.until(lambda d: d.execute_script(LOADED_THUMBNAILS) == 4)
    wait.until(lambda d: d.find_element(By.ID, "citation-check").is_displayed())
    assert reply.released is True
    answer = driver.find_element(By.ID, "answer-text")
    assert answer.text == "A red circle [1]. A square [9]. Nothing else here."
    assert [a.get_attribute("href").split("#")[1] for a in answer.find_elements(By.TAG_NAME, "a")] == ["result-1"]
    assert answer.find_element(By.CSS_SELECTOR, ".unknown-citation").text == "[9]"
    checks = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#citation-check li")]
    assert checks == [
        "[9] is not one of the 4 items the answer was given (unknown citation)",
        "No citation: “Nothing else here.”",
    ]
    assert driver.find_element(By.ID, "result-1").get_attribute("class").split() == ["card", "cited"]
    assert "streaming" not in driver.find_element(By.ID, "answer").get_attribute("class")
    assert not driver.find_element(By.ID, "answer-cut").is_displayed()  # a clean finish carries no cut-off mark
    screenshot(driver, "ask-streamed.png")


def test_an_answer_that_breaks_off_stays_with_the_error_and_the_evidence(
    browser, answering_server: str, llm: FakeLLMServer
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    wait = WebDriverWait(driver, 30)
    llm.replies[:] = [Reply("A red circle [1] and", break_after=4)]
    driver.get(answering_server + "/")
    wait.until(lambda d: "answers by vision-test" in d.find_element(By.ID, "stats").text)
    driver.find_element(By.ID, "text").send_keys("a red shape")
    driver.find_element(By.ID, "filter").send_keys("tags=shape")
    driver.find_element(By.ID, "ask").click()
    wait.until(lambda d: "The answer broke off:" in d.find_element(By.ID, "status").text)
    assert "error" in driver.find_element(By.ID, "status").get_attribute("class")
    assert "stopped mid-answer" in driver.find_element(By.ID, "status").text
    assert driver.find_element(By.ID, "answer-text").text == "A red circle [1]"
    mark = driver.find_element(By.ID, "answer-cut")
    assert mark.is_displayed() and mark.text.startswith("Answer cut off: the LLM stopped mid-answer")
    wait.until(lambda d: d.execute_script(LOADED_THUMBNAILS) == 4)
    screenshot(driver, "ask-partial.png")


CHUNK = ("report.docx#tracking-faults", "Tracking faults are reported by the watchdog within two seconds. " * 3)


@pytest.fixture(scope="module")
def text_server(settings: Settings, tiny_base) -> Iterator[str]:
    """The app over a text chunk and a picture, in their own collection."""
    from rag.items import ImageRef, KnowledgeItem

    texts = Settings(**{**settings.model_dump(), "collection": "texts"})
    picture = SAMPLES / "shapes-red-circle.png"
    items = [
        KnowledgeItem.create(source=f"/srv/docs/{CHUNK[0]}", text=CHUNK[1]),  # named by its file name and anchor
        KnowledgeItem.create(
            source=str(picture),
            text="a red circle",
            image=ImageRef(uri=str(picture), mime_type="image/png"),
            image_bytes=picture.read_bytes(),
        ),
    ]
    with MilvusStore.open(texts.milvus_uri, "texts", encoder_info=EncoderInfo.of(tiny_base)) as store:
        assert ingest(items, tiny_base, store).added == 2
    with serve_in_thread(texts, tiny_base) as url:
        yield url


def test_a_text_result_shows_a_snippet_its_document_and_its_anchor(browser, text_server: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    wait = WebDriverWait(driver, 20)
    driver.get(text_server + "/")
    wait.until(lambda d: "2 items" in d.find_element(By.ID, "stats").text)
    driver.find_element(By.ID, "text").send_keys("tracking faults")
    driver.find_element(By.ID, "filter").send_keys("modality=text")
    driver.find_element(By.ID, "search").click()
    wait.until(lambda d: d.execute_script(CARDS) == 1)
    card = driver.find_element(By.CSS_SELECTOR, "#results .card")
    excerpt = card.find_element(By.CSS_SELECTOR, ".thumb .excerpt")
    assert excerpt.is_displayed() and excerpt.text.startswith("Tracking faults are reported by the watchdog")
    assert card.find_element(By.CSS_SELECTOR, ".document").text == "report.docx"
    assert card.find_element(By.CSS_SELECTOR, ".anchor").text == "#tracking-faults"
    assert not card.find_element(By.CSS_SELECTOR, ".body .text").is_displayed()  # shown once, in the excerpt
    assert "text-to-any" in driver.find_element(By.ID, "status").text
    screenshot(driver, "text-result.png")


def test_the_page_keeps_a_conversation_until_reset(browser, answering_server: str, llm: FakeLLMServer) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    wait = WebDriverWait(driver, 30)
    llm.replies[:] = [Reply("A red circle [1]."), Reply("Which shape is blue?"), Reply("The blue square [1].")]
    asked = len(llm.requests)
    driver.get(answering_server + "/")
    wait.until(lambda d: "answers by vision-test" in d.find_element(By.ID, "stats").text)
    driver.find_element(By.ID, "filter").send_keys("tags=shape")

    def ask(question: str, answer: str) -> None:
        driver.find_element(By.ID, "text").clear()
        driver.find_element(By.ID, "text").send_keys(question)
        driver.find_element(By.ID, "ask").click()
        wait.until(lambda d: d.find_element(By.ID, "answer-text").text == answer)
        wait.until(lambda d: d.execute_script(LOADED_THUMBNAILS) == 4)

    ask("a red shape", "A red circle [1].")
    ask("and the blue one?", "The blue square [1].")
    turns = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#conversation-turns li")]
    assert turns == [
        "You: a red shape",
        "Answer: A red circle [1].",
        "You: and the blue one?",
        "Answer: The blue square [1].",
    ]
    assert driver.find_element(By.ID, "searched").text == "Searched for: Which shape is blue?"
    condensing = llm.requests[asked + 1]["body"]["messages"][1]["content"]
    assert "User: a red shape\nAssistant: A red circle [1]." in condensing
    assert condensing.endswith("Follow-up: and the blue one?")
    screenshot(driver, "conversation.png")

    driver.find_element(By.ID, "reset-conversation").click()
    assert not driver.find_element(By.ID, "conversation").is_displayed()
    llm.replies[:] = [Reply("Fresh [2].")]
    ask("a green shape", "Fresh [2].")
    assert len(llm.requests) == asked + 4  # no condensing after the reset: the question went as asked
    assert driver.find_element(By.ID, "searched").text == ""


@pytest.fixture(scope="module")
def reranking_server(text_server: str, settings: Settings, tiny_base, tmp_path_factory) -> Iterator[str]:
    """The app over the text server's collection, reranking with its own cross-encoder and allowing another."""
    from tests.retrieval.tiny_reranker import build_reranker

    root = tmp_path_factory.mktemp("page-rerankers")
    own, other = build_reranker(root / "own"), build_reranker(root / "other", seed=1)
    reranking = Settings(
        **{**settings.model_dump(), "collection": "texts", "reranker": str(own), "server_rerankers": [str(other)]}
    )
    with serve_in_thread(reranking, tiny_base) as url:
        yield url


def test_the_reranker_control_offers_what_the_server_allows_and_reaches_the_search(
    browser, reranking_server: str
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver = browser
    wait = WebDriverWait(driver, 20)
    driver.get(reranking_server + "/")
    wait.until(lambda d: d.find_element(By.ID, "reranker-box").is_displayed())
    control = Select(driver.find_element(By.ID, "reranker"))
    assert [o.text for o in control.options] == ["server default (own)", "none", "own", "other"]
    driver.find_element(By.ID, "text").send_keys("tracking faults")
    scores = "return [...document.querySelectorAll('#results .card .score')].map((e) => e.textContent);"
    for choice, reranked in [("none", False), ("other", True)]:
        control.select_by_value(choice)
        driver.find_element(By.ID, "search").click()
        wait.until(lambda d: d.execute_script(CARDS) == 2 and "results" in d.find_element(By.ID, "status").text)
        shown = driver.execute_script(scores)
        assert [s.startswith("rerank ") for s in shown] == [reranked, reranked], (choice, shown)
        screenshot(driver, f"reranker-{choice}.png")
        driver.execute_script("document.getElementById('results').replaceChildren()")
