"""``python -m nextmm download [parts=[sd,audioldm]] [dest=checkpoints]``: fetch the public weights.

Each part lands in its folder under ``dest`` (see ``nextmm.weights.required.PARTS``): ImageBind-huge from Meta's URL,
Stable Diffusion 1.5, AudioLDM-l-full and Zeroscope v2 576w from the Hugging Face Hub (only the files a
diffusers folder loads), and the official NExT-GPT checkpoint, which is then converted to nextmm's format.
Downloads resume where they stopped, and a part's marker file (``model_index.json``, ``pytorch_model.pt``)
is written last, so a folder with its marker is complete. Vicuna-7B v0 cannot be downloaded (LLaMA licence):
its steps are printed. Without network nothing crashes: the command prints what to place where, for every
part, and exits with code 2.
"""

from __future__ import annotations

import json
import logging
import os
import re
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig
from tqdm.auto import tqdm

from nextmm.errors import UserError
from nextmm.weights.required import (
    CONVERTED_FOLDER,
    GUIDE,
    PARTS,
    Part,
    is_trained_folder,
    part_present,
)

log = logging.getLogger(__name__)

urlopen = urllib.request.urlopen  # the URL opener; a module attribute so tests can replace it
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60


def _network_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "could not reach the server": OSError covers urllib, requests and the Hub's
    own errors; huggingface_hub 1.x/2.x raise httpx(2) transport errors, which are not OSErrors."""
    errors: list[type[BaseException]] = [OSError]
    for module in ("httpx2", "httpx"):
        try:
            errors.append(__import__(module).HTTPError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


NETWORK_ERRORS = _network_errors()


class NotFetched(Exception):
    """A part could not be fetched; ``offline`` when the network itself is unreachable."""

    def __init__(self, reason: str, *, offline: bool):
        super().__init__(reason)
        self.offline = offline


@dataclass
class Report:
    """What one download run did, per part name."""

    fetched: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # part -> reason
    manual: list[str] = field(default_factory=list)  # parts to build by hand (Vicuna)
    converted: Path | None = None


# ------------------------------------------------------------------------------------------- fetching
def hub_offline() -> bool:
    """HF_HUB_OFFLINE as set now (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE")
    if value is not None:
        return value.strip().upper() in ("1", "ON", "YES", "TRUE")
    return bool(constants.HF_HUB_OFFLINE)


def fetch_url(url: str, target: Path, *, quiet: bool = False) -> Path:
    """Download ``url`` to ``target``, resuming ``<target>.part`` with an HTTP Range request.

    Bytes go to ``<target>.part``, renamed to ``target`` once complete; an interrupted download leaves only
    the ``.part`` file, which the next call resumes. Nothing is created before the server answers.
    """
    partial = target.with_name(target.name + ".part")
    done = partial.stat().st_size if partial.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    try:
        response = urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as error:
        if error.code == 416 and done:  # nothing left past the end of what we have: it is complete
            os.replace(partial, target)
            return target
        raise
    with response:
        if done and getattr(response, "status", 200) != 206:
            log.info("%s ignored the range request; starting over", url)
            done = 0
        length = response.headers.get("Content-Length")
        total = done + int(length) if length else None
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "ab" if done else "wb") as out, tqdm(
            total=total, initial=done, unit="B", unit_scale=True, desc=target.name, disable=quiet
        ) as bar:
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                bar.update(len(chunk))
    size = partial.stat().st_size
    if total is not None and size != total:
        raise OSError(f"download of {url} stopped at {size} of {total} bytes; run again to resume")
    os.replace(partial, target)
    return target


_WEIGHT_NAME = re.compile(
    r"^[^./]+?(?P<v1>\.\w+)?(?:-\d+-of-\d+)?(?P<v2>\.\w+)?\.(?P<fmt>safetensors|bin)(?:\.index(?P<v3>\.\w+)?\.json)?$"
)
_SKIPPED_SUFFIXES = (".msgpack", ".h5", ".onnx", ".onnx_data", ".ckpt", ".pt", ".pth", ".pb", ".tflite")


def pipeline_files(repo_files: Sequence[str], components: Sequence[str]) -> list[str]:
    """The files of a diffusers repo that ``from_pretrained`` reads: each component's configs and tokenizer
    files, and its weights in one format (safetensors, else bin), without variants (fp16, non_ema) or
    other frameworks' files (flax, onnx, original checkpoints). ``model_index.json`` is not included."""
    chosen = []
    for component in components:
        inside = [f for f in repo_files if f.startswith(f"{component}/") and f.count("/") == 1]
        weights = {f: _WEIGHT_NAME.match(f.split("/", 1)[1]) for f in inside}
        plain = {f: m for f, m in weights.items() if m and not (m["v1"] or m["v2"] or m["v3"])}
        fmt = "safetensors" if any(m["fmt"] == "safetensors" for m in plain.values()) else "bin"
        for name in inside:
            if weights[name]:
                if name in plain and plain[name]["fmt"] == fmt:
                    chosen.append(name)
            elif not name.endswith(_SKIPPED_SUFFIXES):
                chosen.append(name)
    return chosen


def fetch_pipeline(repo_id: str, folder: Path) -> Path:
    """A diffusers pipeline repo into ``folder``: components first, model_index.json last."""
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download

    index = json.loads(Path(hf_hub_download(repo_id, "model_index.json")).read_text())
    components = [k for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and None not in v]
    files = pipeline_files(HfApi().list_repo_files(repo_id), components)
    snapshot_download(repo_id, local_dir=folder, allow_patterns=files)
    hf_hub_download(repo_id, "model_index.json", local_dir=folder)
    return folder


def fetch_hub_files(repo_id: str, folder: Path, files: Sequence[str], marker: str) -> Path:
    """The listed files of a Hub repo (those present there) into ``folder``, the marker last."""
    from huggingface_hub import hf_hub_download, snapshot_download

    snapshot_download(repo_id, local_dir=folder, allow_patterns=[f for f in files if f != marker])
    hf_hub_download(repo_id, marker, local_dir=folder)
    return folder


def fetch(part: Part, dest: Path, *, quiet: bool = False) -> Path:
    """Fetch one part into ``dest``; raises NotFetched with a one-line reason."""
    target = dest / part.folder
    if part.kind != "url" and hub_offline():
        raise NotFetched("no network: HF_HUB_OFFLINE is set", offline=True)
    try:
        if part.kind == "url":
            return fetch_url(part.source, target, quiet=quiet)
        if part.kind == "diffusers":
            return fetch_pipeline(part.source, target)
        if part.kind == "hub":
            return fetch_hub_files(part.source, target, part.files, part.marker)
    except NETWORK_ERRORS as error:
        response = getattr(error, "response", None)
        offline = response is None and not isinstance(error, urllib.error.HTTPError)
        raise NotFetched(_one_line(error), offline=offline) from None
    raise ValueError(f"part {part.name} ({part.kind}) cannot be downloaded")


def download(parts: Sequence[str], dest: str | Path, *, convert: bool = True, quiet: bool = False) -> Report:
    """Fetch ``parts`` into ``dest``, skipping those already complete. Once the network proved unreachable,
    the remaining parts are not tried. With ``convert``, the official checkpoint is converted to
    ``dest/nextgpt_7b`` when that folder is missing."""
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise UserError(f"unknown part(s) {', '.join(unknown)}: choose from {', '.join(PARTS)}")
    dest = Path(dest)
    report, offline_reason = Report(), None
    for name in parts:
        part = PARTS[name]
        if part_present(part, dest / part.folder):
            report.present.append(name)
        elif part.kind == "manual":
            report.manual.append(name)
        elif offline_reason is not None:
            report.failed[name] = offline_reason
        else:
            log.info("downloading %s from %s into %s", part.what, part.source, dest / part.folder)
            try:
                fetch(part, dest, quiet=quiet)
                report.fetched.append(name)
            except NotFetched as error:
                report.failed[name] = str(error)
                if error.offline:
                    offline_reason = str(error)
    official, converted = dest / PARTS["nextgpt"].folder, dest / CONVERTED_FOLDER
    if convert and "nextgpt" in parts and "nextgpt" not in report.failed and not is_trained_folder(converted):
        from nextmm.weights.convert import convert_checkpoint

        report.converted = convert_checkpoint(official, converted, "nextgpt_7b")
    return report


# ----------------------------------------------------------------------------------------- instructions
def placement(part: Part, dest: Path) -> str:
    """What to place where for one part, as several indented lines."""
    target = dest / part.folder
    shown = f"{target}/" if part.marker else str(target)
    source = part.source if part.kind == "url" else f"https://huggingface.co/{part.source} (Hub repo {part.source})"
    lines = [shown, f"    {part.what}", f"    source:   {source}", f"    expected: {part.expected}"]
    if part.name == "nextgpt":
        lines.append(f"    then:     python -m nextmm convert source={target} output={dest / CONVERTED_FOLDER}")
    return "\n".join(lines)


def vicuna_steps(dest: Path) -> str:
    """How to build Vicuna-7B v0 by hand (LLaMA-7B plus the Vicuna v0 delta), as FastChat documents it."""
    target = dest / PARTS["vicuna"].folder
    return "\n".join([
        f"{target}/",
        f"    {PARTS['vicuna'].what}: cannot be downloaded (LLaMA licence); build it once:",
        f"    1. get the original LLaMA-7B weights from Meta (the request form is linked in {GUIDE}) and convert "
        "them to a transformers folder with transformers 4.x's script (not shipped with transformers 5):",
        "         python -m transformers.models.llama.convert_llama_weights_to_hf --input_dir LLAMA_DIR "
        "--model_size 7B --output_dir llama-7b-hf",
        "    2. download the Vicuna v0 delta: hf download lmsys/vicuna-7b-delta-v0 --local-dir vicuna-7b-delta-v0",
        "    3. apply it with FastChat v0.1.10 (pip install git+https://github.com/lm-sys/FastChat.git@v0.1.10):",
        "         python -m fastchat.model.apply_delta --base llama-7b-hf --delta vicuna-7b-delta-v0 "
        f"--target {target}",
        f"    expected: {PARTS['vicuna'].expected}",
        f"    details:  {GUIDE}#vicuna-7b-v0",
    ])


def main(cfg: DictConfig) -> int:
    dest = Path(cfg.dest)
    parts = [cfg.parts] if isinstance(cfg.parts, str) else list(cfg.parts)
    report = download(parts, dest, convert=cfg.convert, quiet=cfg.quiet)
    for name in report.present:
        print(f"present:    {name} ({dest / PARTS[name].folder})")
    for name in report.fetched:
        print(f"downloaded: {name} ({dest / PARTS[name].folder})")
    if report.converted is not None:
        print(f"converted:  nextgpt -> {report.converted}")
    if report.failed:
        print("\nPlace these by hand (or run `python -m nextmm download` on a machine with network and copy the "
              f"folders into {dest}/):\n")
        print("\n\n".join(placement(PARTS[name], dest) for name in report.failed))
    if "vicuna" in report.manual:
        print(f"\n{vicuna_steps(dest)}")
    if report.failed:
        reasons = sorted(set(report.failed.values()))
        raise UserError(
            f"could not download {', '.join(report.failed)} ({'; '.join(reasons)}); "
            "the lines above say what to place where"
        )
    return 0


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}" if text else type(error).__name__
