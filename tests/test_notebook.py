from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).parents[1] / "examples" / "quickstart.ipynb"


@pytest.mark.slow
def test_quickstart_runs_and_shows_image_audio_and_video(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    rich = [o.get("data", {}) for o in outputs if o.output_type in ("display_data", "execute_result")]
    assert any("image/png" in d for d in rich), "the image is shown inline"
    html = " ".join(d.get("text/html", "") for d in rich)
    assert "<audio" in html and "<video" in html, "an audio player and the video are shown inline"
    text = " ".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "outputs: [('image', 0), ('audio', 0), ('video', 0)]" in text
