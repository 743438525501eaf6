"""Our preprocessing against ImageBind's own data.py, read from its source (importing it fails here)."""

import ast
import importlib.util
import logging
import math
import re
import subprocess
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import torchaudio
from PIL import Image
from torchvision import transforms

from nextmm.errors import ConfigError, MediaError
from nextmm.parts import preprocess as pp

DATA_PY = Path(importlib.util.find_spec("imagebind").submodule_search_locations[0]) / "data.py"


@pytest.fixture(scope="module")
def data_py() -> ast.Module:
    return ast.parse(DATA_PY.read_text())


def _definition(tree: ast.Module, name: str) -> ast.AST:
    return next(n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == name)


def _exec_definitions(tree: ast.Module, names: list[str], namespace: dict) -> dict:
    """Run only the named top-level definitions of data.py, in `namespace` (its imports stubbed)."""
    module = ast.Module(body=[_definition(tree, n) for n in names], type_ignores=[])
    exec(compile(module, str(DATA_PY), "exec"), namespace)
    return namespace


def _defaults(function: ast.FunctionDef) -> dict:
    args = function.args.args[len(function.args.args) - len(function.args.defaults) :]
    return {a.arg: ast.literal_eval(d) for a, d in zip(args, function.args.defaults)}


def _call_keywords(tree: ast.AST, callee: str) -> list[dict]:
    """Literal keyword arguments of every call to `callee` (e.g. 'Normalize') inside `tree`."""
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func).endswith(callee)]
    return [{k.arg: ast.literal_eval(k.value) for k in c.keywords if isinstance(k.value, ast.Constant | ast.Tuple)} for c in calls]


def _pytorchvideo_file(relative: str) -> types.ModuleType:
    """Load one self-contained pytorchvideo file without its package (pytorchvideo.transforms is broken)."""
    root = Path(importlib.util.find_spec("pytorchvideo").submodule_search_locations[0])
    spec = importlib.util.spec_from_file_location(f"_pv_{Path(relative).stem}", root / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_constants_equal_data_py_defaults(data_py):
    audio = _defaults(_definition(data_py, "load_and_transform_audio_data"))
    assert audio == {
        "num_mel_bins": pp.AUDIO_NUM_MEL_BINS,
        "target_length": pp.AUDIO_TARGET_LENGTH,
        "sample_rate": pp.AUDIO_SAMPLE_RATE,
        "clip_duration": pp.AUDIO_CLIP_DURATION,
        "clips_per_video": pp.AUDIO_CLIPS,
        "mean": pp.AUDIO_MEAN,
        "std": pp.AUDIO_STD,
    }
    video_fn = _definition(data_py, "load_and_transform_video_data")
    video = _defaults(video_fn)
    assert (video["clip_duration"], video["clips_per_video"]) == (pp.VIDEO_CLIP_DURATION, pp.VIDEO_CLIPS)
    # Frames per clip: UniformTemporalSubsample(num_samples=clip_duration).
    assert "UniformTemporalSubsample(num_samples=clip_duration)" in ast.unparse(video_fn)
    assert video["clip_duration"] == pp.VIDEO_FRAMES_PER_CLIP
    assert "SpatialCrop(224, num_crops=3)" in ast.unparse(video_fn) and pp.VIDEO_SPATIAL_CROPS == 3
    assert "ShortSideScale(224)" in ast.unparse(video_fn) and pp.IMAGE_SIZE == 224
    for name in ("load_and_transform_vision_data", "load_and_transform_video_data"):
        (normalize,) = _call_keywords(_definition(data_py, name), "Normalize" if "vision" in name else "NormalizeVideo")
        assert normalize == {"mean": pp.CLIP_MEAN, "std": pp.CLIP_STD}
    (fbank,) = _call_keywords(_definition(data_py, "waveform2melspec"), "kaldi.fbank")
    assert fbank["frame_length"] == pp.AUDIO_FRAME_LENGTH_MS
    assert "DEFAULT_AUDIO_FRAME_SHIFT_MS = 10" in DATA_PY.read_text() and pp.AUDIO_FRAME_SHIFT_MS == 10


@pytest.mark.parametrize("seconds", [0.5, 2.0, 3.0])  # pad, exact-ish, cut
def test_fbank_equals_data_py_waveform2melspec(data_py, seconds):
    ns = _exec_definitions(
        data_py, ["waveform2melspec"], {"torch": torch, "torchaudio": torchaudio, "logging": logging, "DEFAULT_AUDIO_FRAME_SHIFT_MS": 10}
    )
    t = torch.arange(int(16000 * seconds)) / 16000
    waveform = (0.3 * torch.sin(2 * math.pi * 440 * t) + 0.05).unsqueeze(0)  # (1, samples), with a DC offset
    expected = ns["waveform2melspec"](waveform.clone(), 16000, 128, 204)
    ours = pp.waveform_to_fbank(waveform.clone(), 16000, 128, 204)
    assert ours.shape == (1, 128, 204)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)


def test_audio_pipeline_equals_data_py(data_py):
    """data.py's whole audio function (torchaudio.load stubbed): 5 s stereo at 22.05 kHz, clips overlap."""
    sampler = _pytorchvideo_file("data/clip_sampling.py").ConstantClipsPerVideoSampler
    rng = np.random.default_rng(0)
    t = np.arange(22050 * 5) / 22050
    stereo = np.stack([0.4 * np.sin(2 * np.pi * 300 * t), 0.2 * rng.standard_normal(t.size)]).astype(np.float32) + 0.02
    torchaudio_stub = types.SimpleNamespace(
        load=lambda path: (torch.from_numpy(stereo.copy()), 22050),
        functional=torchaudio.functional,
        compliance=torchaudio.compliance,
    )
    ns = _exec_definitions(
        data_py,
        ["waveform2melspec", "get_clip_timepoints", "load_and_transform_audio_data"],
        {"torch": torch, "torchaudio": torchaudio_stub, "logging": logging, "transforms": transforms,
         "ConstantClipsPerVideoSampler": sampler, "DEFAULT_AUDIO_FRAME_SHIFT_MS": 10},
    )
    expected = ns["load_and_transform_audio_data"](["stub.wav"], "cpu")[0]
    given = stereo.copy()
    ours = pp.audio_tensor(stereo, 22050)
    assert ours.shape == (3, 1, 128, 204)
    assert np.array_equal(stereo, given)  # data.py's in-place mean removal stays inside audio_tensor
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)


def test_clip_timepoints_equal_pytorchvideo_sampler():
    sampler = _pytorchvideo_file("data/clip_sampling.py").ConstantClipsPerVideoSampler(clip_duration=2, clips_per_video=5)
    for duration in (0.3, 2.0, 7.13, 61.0):
        expected, last, end = [], False, 0.0
        while not last:
            start, end, _, _, last = sampler(end, duration, annotation=None)
            expected.append((start, end))
        assert pp.clip_timepoints(duration, 2, 5) == expected


def test_image_equals_data_py(data_py, tmp_path):
    path = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(path)
    ns = _exec_definitions(data_py, ["load_and_transform_vision_data"], {"torch": torch, "transforms": transforms, "Image": Image})
    expected = ns["load_and_transform_vision_data"]([path], "cpu")[0]
    assert torch.equal(pp.load_media("image", path), expected)


def test_mid_grey_image_normalises_to_known_values(tmp_path):
    path = tmp_path / "grey.png"
    Image.fromarray(np.full((40, 60, 3), 128, dtype=np.uint8)).save(path)
    image = pp.load_media("image", path)
    assert image.shape == (3, 224, 224)
    expected = [(128 / 255 - m) / s for m, s in zip(pp.CLIP_MEAN, pp.CLIP_STD)]  # about 0.076, 0.169, 0.340
    torch.testing.assert_close(image.mean(dim=(1, 2)), torch.tensor(expected), rtol=0, atol=1e-6)
    torch.testing.assert_close(image.std(dim=(1, 2)), torch.zeros(3), rtol=0, atol=1e-6)


def test_wav_file(tmp_path):
    path = tmp_path / "tone.wav"
    t = np.arange(44100 * 3) / 44100
    soundfile.write(path, 0.3 * np.sin(2 * np.pi * 440 * t), 44100)
    audio = pp.load_media("audio", path)
    assert audio.shape == (3, 1, 128, 204) and torch.isfinite(audio).all()


def test_too_short_audio_is_a_media_error(tmp_path):
    path = tmp_path / "click.wav"
    soundfile.write(path, np.zeros(100), 16000)
    with pytest.raises(MediaError, match="shorter than one 25 ms"):
        pp.load_media("audio", path)


def _frames(count, height, width):
    """(count, H, W, 3) uint8 frames whose red channel is the frame index, so picks are visible."""
    frames = np.zeros((count, height, width, 3), dtype=np.uint8)
    frames[..., 0] = np.arange(count)[:, None, None]
    return frames


def test_video_frames_sampled_as_pytorchvideo_does():
    # 3 s at 10 fps: clip starts 0, .2, .4, .6, .8 s -> frames [0,20), [2,22), ... -> first and last of each.
    picks = [idx.tolist() for idx in pp.video_frame_indices(30, 10.0)]
    assert picks == [[0, 19], [2, 21], [4, 23], [6, 25], [8, 27]]
    video = pp.video_tensor(_frames(30, 48, 64), fps=10.0)
    assert video.shape == (15, 3, 2, 224, 224)
    red = video[:, 0, :, 100, 100] * pp.CLIP_STD[0] + pp.CLIP_MEAN[0]  # (15, 2) back to [0, 1]
    torch.testing.assert_close(red * 255, torch.tensor(picks, dtype=torch.float32).repeat_interleave(3, dim=0), rtol=0, atol=1e-3)


def test_spatial_crops_run_along_the_long_side():
    frames = np.zeros((4, 96, 64, 3), dtype=np.uint8)  # portrait: crops go top, centre, bottom
    frames[:, :8, :, 1] = 255  # a green band at the top: only the top crop starts in it
    video = pp.video_tensor(frames, fps=4.0)
    green_top = video[:3, 1, 0, 0, 112]  # top-left of the first clip's 3 crops
    assert green_top[0] > green_top[1] and green_top[1] == green_top[2]


def test_short_video_still_gives_five_clips():
    video = pp.video_tensor(_frames(3, 32, 32), fps=8.0)  # 0.375 s
    assert video.shape == (15, 3, 2, 224, 224)


def test_empty_video_is_rejected():
    with pytest.raises(ValueError, match="0 frames"):
        pp.video_tensor(np.zeros((0, 32, 32, 3), dtype=np.uint8), fps=8.0)


@pytest.fixture(scope="module")
def mp4(tmp_path_factory):
    from moviepy import ImageSequenceClip

    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    y, x = np.mgrid[0:48, 0:64]
    # A gradient that moves, and a blue level that jumps per frame, so a wrong frame shows.
    frames = [np.stack([(x * 4 + i * 9) % 256, (y * 5) % 256, np.full_like(x, i * 37 % 256)], -1).astype(np.uint8) for i in range(24)]
    ImageSequenceClip(frames, fps=8).write_videofile(str(path), codec="libx264", logger=None)
    return path


def test_mp4_file(mp4):
    video = pp.load_media("video", mp4)
    assert video.shape == (15, 3, 2, 224, 224) and torch.isfinite(video).all()


def test_video_pipeline_equals_data_py_with_decord(data_py, mp4):
    """data.py's whole video function, decoding with decord as it does; only pv_transforms is stubbed."""
    pytest.importorskip("decord")
    from pytorchvideo.data.encoded_video import EncodedVideo

    class EncodedVideoStub:  # data.py passes sample_rate=, which pytorchvideo 0.1.5's from_path refuses
        @staticmethod
        def from_path(file_path, decoder, decode_audio, sample_rate):
            return EncodedVideo.from_path(file_path, decoder=decoder, decode_audio=decode_audio)

    functional = _pytorchvideo_file("transforms/functional.py")
    pv_transforms = types.SimpleNamespace(
        ShortSideScale=lambda size: lambda x: functional.short_side_scale(x, size),
        UniformTemporalSubsample=lambda num_samples: lambda x: functional.uniform_temporal_subsample(x, num_samples),
    )
    ns = _exec_definitions(
        data_py,
        ["get_clip_timepoints", "crop_boxes", "uniform_crop", "SpatialCrop", "NormalizeVideo", "load_and_transform_video_data"],
        {"torch": torch, "nn": torch.nn, "math": math, "transforms": transforms, "pv_transforms": pv_transforms,
         "EncodedVideo": EncodedVideoStub, "ConstantClipsPerVideoSampler": _pytorchvideo_file("data/clip_sampling.py").ConstantClipsPerVideoSampler},
    )
    expected = ns["load_and_transform_video_data"]([str(mp4)], "cpu")[0]
    ours = pp.load_media("video", mp4)
    # Equal here; the tolerance (a few 8-bit levels) allows another ffmpeg build's YUV->RGB rounding,
    # while a wrong frame is off by at least 9 levels in red and blue.
    torch.testing.assert_close(ours, expected, rtol=0, atol=0.03)


@pytest.mark.parametrize(
    "modality, name",
    [("image", "x.png"), ("audio", "x.wav"), ("video", "x.mp4")],
)
def test_missing_wrong_type_and_corrupt_files_raise_media_error(tmp_path, modality, name):
    missing = tmp_path / "absent" / name
    with pytest.raises(MediaError, match="not found") as err:
        pp.load_media(modality, missing)
    assert str(missing) in str(err.value)

    wrong = tmp_path / "notes.txt"
    wrong.write_text("hello")
    with pytest.raises(MediaError, match="unsupported") as err:
        pp.load_media(modality, wrong)
    assert str(wrong) in str(err.value) and SUPPORTED_FIRST[modality] in str(err.value)

    corrupt = tmp_path / name
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    with pytest.raises(MediaError, match="cannot decode") as err:
        pp.load_media(modality, corrupt)
    assert str(corrupt) in str(err.value) and "\n" not in str(err.value)


SUPPORTED_FIRST = {m: exts[0] for m, exts in pp.SUPPORTED_EXTENSIONS.items()}


def test_inputs_preprocessing_cannot_use_are_one_line_errors_naming_them(tmp_path):
    """Checked before decoding or allocating: a sliver of a picture, a folder, a sound-only video, NaN audio."""
    import imageio_ffmpeg

    Image.new("RGB", (12000, 1)).save(tmp_path / "sliver.png")  # 100 bytes that would scale to 2.7 M x 224
    soundfile.write(tmp_path / "nan.wav", np.full(1600, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    sound_only = tmp_path / "sound_only.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i",
                    "sine=frequency=440:duration=1", "-c:a", "aac", str(sound_only)], check=True)
    cases = {
        ("image", tmp_path / "sliver.png"): "12000 x 1 pixels, longer than 20:1",
        ("image", tmp_path): "is a folder, not a file",
        ("audio", tmp_path / "nan.wav"): "NaN or infinite samples",
        ("video", sound_only): "holds sound but no pictures",
    }
    for (modality, path), message in cases.items():
        with pytest.raises(MediaError, match=re.escape(message)) as error:
            pp.load_media(modality, path)
        assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_in_memory_media_problems_are_media_errors():
    from nextmm.inference.conversation import GenerationSettings, to_media

    with pytest.raises(MediaError, match="image input: the image is 0 x 0 pixels"):
        to_media("image", Image.new("RGB", (0, 0)))
    with pytest.raises(MediaError, match="audio input: the sound holds NaN"):
        to_media("audio", (np.full(1600, np.inf, dtype=np.float32), 16000))
    with pytest.raises(ConfigError, match=r"outputs='image': give a list"):
        GenerationSettings().updated(outputs="image")
