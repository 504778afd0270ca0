"""The Space app over real parallel releases on the local Hub: a real browser, and its API.

Three teachers' real traces (../shared/data/teachers/misguided_attention) are built into
parallel releases (one private), published to the local Hub, and served by
``hubtools space run`` on loopback. Debian's chromium, driven by Playwright, uses the
page as a user would; every request it makes must stay on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil

import pytest
from space_support import ARTIFACTS, TEACHERS, hubtools_command, misguided_releases, start_app
from space_support import stop as stop_app

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


@pytest.fixture(scope="module")
def app(hub, write_token, tmp_path_factory):
    """(url, specs): the app of `hubtools space run` over the three releases."""
    top = tmp_path_factory.mktemp("space-app")
    specs = misguided_releases(top, hub, write_token, f"space-app-{os.getpid()}")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {"HF_TOKEN": write_token, "HUBTOOLS_SPACE_CACHE": str(top / "cache"),
           "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    command = hubtools_command("space", "run", "--datasets", ",".join(specs), "--port", "{port}",
                               "--endpoint", hub.url)  # fmt: skip
    proc, url = start_app(command, env, top / "app.log")
    yield url, specs
    stop_app(proc)


def test_browser_side_by_side(app):
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    url, _ = app
    shots = ARTIFACTS / "space"
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    requests = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.on("request", lambda r: requests.append(r.url))
        page.goto(url)
        page.get_by_text("page 1 of").wait_for(timeout=30_000)
        # Filter: a category, and the prompts that mention a word; then pick the first query.
        page.get_by_label("Category").click()
        page.get_by_role("option", name="general").click()
        page.get_by_label("Search the prompts").fill("man")
        page.get_by_role("button", name="Search").click()
        page.get_by_text("page 1 of 1").or_(page.get_by_text("page 1 of 2")).wait_for()
        total = page.locator("#queries label").count()
        assert 0 < total <= 10
        page.locator("#queries label").first.click()
        page.get_by_text("Link to this query").wait_for()
        for i, teacher in enumerate(TEACHERS):  # one column per teacher, with its score
            column = page.locator(f"#col-{i}")
            column.get_by_role("heading", name=teacher).wait_for()
            assert "score" in column.inner_text()
            assert "tokens (think" in column.inner_text()  # the release's token counts
        page.get_by_label("length ≥ (tokens)").wait_for()  # every row has counts: tokens
        # Thinking is collapsed until the user opens it.
        closed = len(page.locator("#col-0").inner_text())
        page.locator("#col-0").get_by_text(f"Thinking ({TEACHERS[0]})").click()
        page.wait_for_timeout(500)
        assert len(page.locator("#col-0").inner_text()) > closed + 200
        page.locator("#query-link").scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "side-by-side.png"), full_page=False)
        href = page.locator("#query-link a").get_attribute("href")
        query_id = href.split("q=")[1]
        # The link reopens the same query on a fresh page.
        page.goto(url + href.lstrip("/"))
        page.locator("#query-link").get_by_text(query_id).wait_for(timeout=30_000)
        page.locator("#col-2").get_by_role("heading", name=TEACHERS[2]).wait_for()
        # Page forward over all queries.
        page.get_by_label("Search the prompts").fill("")
        page.get_by_role("button", name="Search").click()
        page.get_by_text("page 1 of").wait_for()
        page.locator("#next-page").click()
        page.get_by_text("page 2 of").wait_for()
        page.screenshot(path=str(shots / "page-2.png"), full_page=True)
        page.get_by_role("tab", name="Distributions").click()
        page.get_by_text("per teacher").first.wait_for()
        page.get_by_text("Response tokens (think + answer)").wait_for()  # analyze's stats.json
        # Our plot and the figures the releases published, loaded (from 127.0.0.1).
        page.wait_for_function(
            "() => [...document.images].filter(i => i.complete && i.naturalWidth > 0).length >= 3"
        )
        page.screenshot(path=str(shots / "distributions.png"), full_page=True)
        page.get_by_role("tab", name="Overview").click()
        page.get_by_text("How it was made").first.wait_for()
        browser.close()
    hosts = {r.split("/")[2] for r in requests if "://" in r}
    assert hosts and all(h.startswith("127.0.0.1:") for h in hosts), hosts


def test_api_with_gradio_client(app):
    from gradio_client import Client

    url, specs = app
    client = Client(url, verbose=False)
    overview = client.predict(api_name="/overview")
    assert [r["label"] for r in overview["releases"]] == list(TEACHERS)
    assert all(r["rows"]["all"] > 0 for r in overview["releases"])
    everything = client.predict(api_name="/search", page_size=200)
    assert everything["total"] == overview["releases"][0]["rows"]["all"] > 10
    second = client.predict(api_name="/search", page=1, page_size=5)
    assert [i["query_id"] for i in second["items"]] == [
        i["query_id"] for i in everything["items"][5:10]
    ]
    low = client.predict(api_name="/search", score_max=0.95, release=TEACHERS[0], page_size=200)
    for item in low["items"]:
        assert item["rows"][TEACHERS[0]]["score"] <= 0.95
    query = client.predict(everything["items"][0]["query_id"], api_name="/query")
    assert set(query["answers"]) == set(TEACHERS)  # the private release too (the token)
    for row in query["answers"].values():
        assert row["score"] >= 0.9 and (row["answer"] or row["truncated"])
        assert row["ppl"] >= 1.0  # the stored scores' perplexity, released with the row
    assert query["prompt"][0]["from"] == "human" and query["prompt"][0]["value"]
    # Token counts (what `hubtools score` stored): the length filter is in tokens.
    assert overview["length_unit"] == "tokens"
    sizes = sorted(r["rows"][TEACHERS[0]]["think_tokens"] + r["rows"][TEACHERS[0]]["answer_tokens"]
                   for r in everything["items"])  # fmt: skip
    limit = sizes[len(sizes) // 2]
    short = client.predict(api_name="/search", length_max=limit, release=TEACHERS[0],
                           page_size=200)  # fmt: skip
    assert short["total"] == sum(n <= limit for n in sizes) < len(sizes)
    for item in short["items"]:
        row = item["rows"][TEACHERS[0]]
        assert row["think_tokens"] + row["answer_tokens"] <= limit
