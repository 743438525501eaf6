"""The web page of `nextmm serve` in a real browser (headless Chromium through Playwright), on the toyworld model:
a surf vlog answer shows an image, an audio player and a video with its soundtrack; an attached picture is
described; a corrupt, an unsupported and a too large upload get a readable message and the conversation goes on;
"New conversation" starts over.

Chromium is Debian's (`apt-get install chromium`; Playwright's own browser download is not used). Where it or
Playwright is missing, the test is skipped and says so. NEXTMM_README_SCREENSHOT=1 also writes the screenshot to
docs/images/serve.png, as shown in the README.
"""

import os
import shutil
import subprocess
from pathlib import Path

import httpx
import imageio_ffmpeg
import pytest
from fixtures.serving import running

from nextmm.model import NextMM
from nextmm.serving.app import build_app
from nextmm.serving.limits import Limits

CHROMIUM = os.environ.get("NEXTMM_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
LIMITS = Limits(max_upload_mb=0.5)  # a small limit, to see a larger upload refused
TURN_TIMEOUT_MS = 120_000  # a toyworld surf vlog takes seconds on an idle CPU, much longer on a loaded one

sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None,
                       reason=f"no Chromium at {CHROMIUM}: apt-get install chromium (or set NEXTMM_CHROMIUM)"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("served")
    app = build_app(lambda: NextMM.from_config("toyworld"), model_name="toyworld", output_dir=output_dir,
                    limits=LIMITS)
    with running(app) as url:
        yield url, output_dir


@pytest.fixture(scope="module")
def browser_page(server):
    url, _ = server
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 1300})
        page.set_default_timeout(TURN_TIMEOUT_MS)
        page.goto(url)
        page.wait_for_selector("#prompt textarea")
        yield page
        browser.close()


def send(page, text: str, files=()) -> None:
    if files:
        page.set_input_files("#prompt input[type=file]", [str(f) for f in files])
        page.wait_for_function(f"document.querySelectorAll('#prompt .thumbnail-item').length >= {len(files)}")
    page.fill("#prompt textarea", text)
    page.press("#prompt textarea", "Enter")


def answers(page) -> list[str]:
    return page.eval_on_selector_all("#chat [data-testid=bot] .message-content", "els => els.map(e => e.innerText)")


def wait_for_answers(page, count: int) -> list[str]:
    page.wait_for_function(f"document.querySelectorAll('#chat [data-testid=bot] .message-content').length >= {count}")
    return answers(page)


def test_people_chat_with_media_on_the_page(browser_page, server, tmp_path):
    page, (url, _) = browser_page, server
    page.get_by_text("surf vlog").first.wait_for(state="visible")  # Gradio renders the examples after the textbox
    assert page.get_by_text("surf vlog").first.is_visible()  # the example prompts
    assert page.get_by_text("Settings").is_visible() and not page.get_by_label("seed").is_visible()  # collapsed

    # 1. a surf vlog: text, an image, an audio player and a video with the sound as its soundtrack
    send(page, "surf vlog")
    page.wait_for_selector("#chat video")
    assert "surf vlog" in wait_for_answers(page, 1)[0]
    assert page.locator("#chat [data-testid=bot] img").count() == 1
    assert page.locator("#chat [data-testid=waveform-Audio]").count() == 1
    assert page.locator("#chat [data-testid=download-link]").count() >= 1  # downloadable
    video = httpx.get(page.get_attribute("#chat video", "src")).content
    (tmp_path / "answer.mp4").write_bytes(video)
    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(tmp_path / "answer.mp4")],
                           capture_output=True, text=True)
    assert "Video:" in probe.stderr and "Audio:" in probe.stderr
    page.screenshot(path=str(tmp_path / "surf_vlog.png"), full_page=True)
    if os.environ.get("NEXTMM_README_SCREENSHOT") == "1":
        (ROOT / "docs" / "images").mkdir(exist_ok=True)
        page.screenshot(path=str(ROOT / "docs" / "images" / "serve.png"), full_page=True)

    # 2. an attached picture (a toyworld beach), and a question about it
    picture = tmp_path / "my beach.png"
    shutil.copy(server[1] / "examples" / "beach.png", picture)
    send(page, "what does this picture show?", [picture])
    described = wait_for_answers(page, 2)[-1].lower()
    assert any(word in described for word in ("beach", "surf", "wave", "sea")), described

    # 3. corrupt, unsupported and too large uploads: a readable message each, and the conversation goes on
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n this is not a picture")
    send(page, "and this one?", [broken])
    note = wait_for_answers(page, 3)[-1]
    assert note.startswith("Cannot answer: broken.png: cannot decode this image file"), note
    assert str(tmp_path) not in note and "/tmp" not in note
    page.screenshot(path=str(tmp_path / "corrupt_upload.png"), full_page=True)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a medium")
    send(page, "and this?", [notes])
    assert wait_for_answers(page, 4)[-1].startswith("Cannot answer: notes.txt: unsupported file type '.txt'")
    large = tmp_path / "large.png"
    large.write_bytes(b"\x89PNG" + bytes(600_000))
    page.set_input_files("#prompt input[type=file]", [str(large)])  # refused as it uploads
    page.get_by_text('File(s) exceed the maximum allowed size').wait_for()
    send(page, "what does this picture show?")
    assert wait_for_answers(page, 5)[-1].strip()

    # 4. a new conversation
    page.click("#new-conversation")
    page.wait_for_function("document.querySelectorAll('#chat [data-testid=bot]').length == 0")
    assert httpx.get(f"{url}/health").json()["status"] == "ok"
