"""The frozen diffusion decoders: tiny random pipelines from nextmm/conf/decoders/tiny.yaml, the real diffusers classes."""

import threading

import numpy as np
import PIL.Image
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from nextmm.config import conf_dir
from nextmm.errors import ConfigError, Stopped
from nextmm.modality import MODALITIES
from nextmm.parts.decoders import PIPELINES, Decoders, build_pipeline
from nextmm.parts.tokenizers import clip_tokenizer, roberta_tokenizer

CONF = conf_dir() / "decoders"
TINY = OmegaConf.load(CONF / "tiny.yaml")
FULL = OmegaConf.load(CONF / "nextgpt_7b.yaml")
CAPTIONS = ["a dog barking in the rain", "Hello, world!"]


@pytest.fixture(scope="module")
def decoders() -> Decoders:
    return Decoders(TINY)


def conditioning(decoders: Decoders, modality: str, batch: int = 2, seed: int = 0) -> torch.Tensor:
    shape = (batch, *decoders.conditioning_shape(modality))
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def render(decoders: Decoders, modality: str, cond: torch.Tensor, seed: int = 0, **kwargs) -> list:
    kwargs = {"num_inference_steps": 2, "guidance_scale": 3.0, "progress": False, **kwargs}
    return decoders.render(modality, cond, generator=torch.Generator().manual_seed(seed), **kwargs)


def as_arrays(outputs: list) -> np.ndarray:
    return np.stack([np.asarray(o) for o in outputs])


@pytest.mark.parametrize("guidance_scale", [1.0, 3.0])
@pytest.mark.parametrize("modality", MODALITIES)
def test_render_gives_configured_media(decoders, modality, guidance_scale):
    out = render(decoders, modality, conditioning(decoders, modality), guidance_scale=guidance_scale)
    assert len(out) == 2
    cfg = TINY[modality]
    if modality == "image":
        assert all(isinstance(im, PIL.Image.Image) for im in out)
        assert out[0].size == (cfg.width, cfg.height)
    elif modality == "audio":
        assert decoders.sample_rate == 16000
        assert out[0].dtype == np.float32 and out[0].shape == (round(cfg.audio_seconds * 16000),)
        assert np.isfinite(out[0]).all()
    else:
        assert out[0].dtype == np.uint8 and out[0].shape == (cfg.num_frames, cfg.height, cfg.width, 3)
        assert cfg.height % 2 == 0 and cfg.width % 2 == 0
        assert decoders.fps == cfg.fps


@pytest.mark.parametrize("modality", MODALITIES)
def test_render_is_deterministic_for_a_generator(decoders, modality):
    cond = conditioning(decoders, modality, batch=1)
    first = as_arrays(render(decoders, modality, cond, seed=7))
    again = as_arrays(render(decoders, modality, cond, seed=7))
    other = as_arrays(render(decoders, modality, cond, seed=8))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("modality", MODALITIES)
def test_a_set_stop_event_ends_the_render_at_the_next_step(decoders, modality):
    cond = conditioning(decoders, modality, batch=1)
    stop = threading.Event()
    stop.set()
    with pytest.raises(Stopped, match="stopped at step 0"):  # each pipeline's own step callback raises
        render(decoders, modality, cond, stop=stop)
    unset = as_arrays(render(decoders, modality, cond, seed=3, stop=threading.Event()))
    np.testing.assert_array_equal(unset, as_arrays(render(decoders, modality, cond, seed=3)))  # never set: as before


def test_render_sizes_override_config(decoders):
    out = render(decoders, "video", conditioning(decoders, "video", batch=1), height=16, width=24, num_frames=3)
    assert out[0].shape == (3, 16, 24, 3)
    audio = render(decoders, "audio", conditioning(decoders, "audio", batch=1), audio_seconds=0.5)
    assert audio[0].shape == (8000,)
    # no size in the call or the config: the pipeline's defaults (unet sample_size x vae factor, 16 frames)
    bare = OmegaConf.masked_copy(TINY.video, ["path", "components", "conditioning_shape"])
    out = render(Decoders({"video": bare}), "video", conditioning(decoders, "video", batch=1))
    assert out[0].shape == (16, 32, 32, 3)


def test_pipelines_load_lazily_one_modality_at_a_time():
    fresh = Decoders(TINY)
    assert fresh.loaded() == ()
    assert fresh.conditioning_shape("video") == (77, 32)
    counted = fresh.num_parameters("audio")  # counted on an empty build, nothing loaded
    assert fresh.loaded() == ()
    render(fresh, "audio", conditioning(fresh, "audio", batch=1))
    assert fresh.loaded() == ("audio",)
    pipe = fresh.pipeline("audio")
    assert counted == sum(p.numel() for c in pipe.components.values() if isinstance(c, torch.nn.Module)
                          for p in c.parameters())
    assert type(pipe).__name__ == PIPELINES["audio"]
    assert fresh.pipeline("audio") is pipe


@pytest.mark.parametrize("modality", MODALITIES)
def test_encode_text_is_the_pipelines_own_text_conditioning(decoders, modality):
    pipe = decoders.pipeline(modality)
    embeds = decoders.encode_text(modality, CAPTIONS)
    assert embeds.shape == (len(CAPTIONS), *decoders.conditioning_shape(modality))

    # recomputed from the pipeline's tokenizer and text encoder, as its prompt= path does
    tokens = pipe.tokenizer(
        CAPTIONS, padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        if modality == "audio":
            text_embeds = pipe.text_encoder(tokens.input_ids, attention_mask=tokens.attention_mask).text_embeds
            expected = F.normalize(text_embeds, dim=-1)
            torch.testing.assert_close(embeds.norm(dim=-1), torch.ones(len(CAPTIONS)))
        else:
            expected = pipe.text_encoder(tokens.input_ids).last_hidden_state
    torch.testing.assert_close(embeds, expected)

    # and rendering it equals rendering from prompt= (the default negative is the encoding of "")
    ours = as_arrays(render(decoders, modality, embeds))
    sizes = {
        "image": {"height": TINY.image.height, "width": TINY.image.width},
        "audio": {"audio_length_in_s": TINY.audio.audio_seconds},
        "video": {"height": TINY.video.height, "width": TINY.video.width, "num_frames": TINY.video.num_frames},
    }[modality]
    out = pipe(
        prompt=CAPTIONS, num_inference_steps=2, guidance_scale=3.0, generator=torch.Generator().manual_seed(0),
        output_type="np", **sizes,
    )
    if modality == "audio":
        np.testing.assert_allclose(ours, out.audios, atol=1e-5)
    else:
        media = out.images if modality == "image" else out.frames  # floats in [0, 1]
        np.testing.assert_array_equal(ours, (np.asarray(media) * 255).round().astype(np.uint8))


@pytest.mark.parametrize("modality", MODALITIES)
def test_save_pretrained_then_load_through_path(decoders, modality, tmp_path):
    folder = tmp_path / modality
    build_pipeline(modality, TINY[modality]).save_pretrained(folder)
    cfg = OmegaConf.to_container(TINY[modality])
    del cfg["components"]
    cfg["path"] = str(folder)
    loaded = Decoders({modality: cfg})

    cond = conditioning(decoders, modality, batch=1)
    in_memory = as_arrays(render(decoders, modality, cond))
    np.testing.assert_array_equal(as_arrays(render(loaded, modality, cond)), in_memory)
    torch.testing.assert_close(loaded.encode_text(modality, CAPTIONS), decoders.encode_text(modality, CAPTIONS))
    assert loaded.num_parameters(modality) == decoders.num_parameters(modality)


def test_missing_or_empty_path_is_a_config_error(tmp_path):
    missing = tmp_path / "no-such-pipeline"
    with pytest.raises(ConfigError, match=str(missing)):
        Decoders({"image": {"path": str(missing), "conditioning_shape": [77, 768]}}).pipeline("image")
    with pytest.raises(ConfigError, match="model_index.json"):
        Decoders({"image": {"path": str(tmp_path), "conditioning_shape": [77, 768]}}).pipeline("image")


def test_bad_input_fails_fast(decoders):
    with pytest.raises(ValueError, match="expected"):
        render(decoders, "image", torch.zeros(1, 77, 31))
    with pytest.raises(ValueError, match="negative"):
        render(decoders, "image", torch.zeros(1, 77, 32), negative=torch.zeros(1, 76, 32))
    with pytest.raises(ValueError, match="negative"):
        render(decoders, "audio", torch.zeros(3, 32), negative=torch.zeros(2, 32))
    with pytest.raises(ConfigError, match="unknown modalities"):
        Decoders({"smell": {}})
    with pytest.raises(ConfigError, match="no video decoder"):
        Decoders({"image": TINY.image}).pipeline("video")


def test_full_size_parameter_counts_on_empty_builds():
    """The real architectures, counted on the meta device: SD 1.5 1.07 B (the paper's 1.3 B ~ with its 0.30 B
    safety checker), AudioLDM-l-full 975 M, Zeroscope v2 576w 1.84 B."""
    full = Decoders(FULL)
    assert full.component_parameters("image") == {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480}
    assert full.component_parameters("audio") == {
        "unet": 739_139_080, "vae": 55_376_873, "text_encoder": 125_302_016, "vocoder": 55_264_897
    }
    assert full.component_parameters("video") == {
        "unet": 1_411_233_860, "vae": 83_653_863, "text_encoder": 340_387_840
    }
    assert [full.num_parameters(m) for m in MODALITIES] == [1_066_235_307, 975_082_866, 1_835_275_563]
    assert [full.conditioning_shape(m) for m in MODALITIES] == [(77, 768), (512,), (77, 1024)]
    assert full.loaded() == ()


def test_tiny_decoders_stay_tiny():
    tiny = Decoders(TINY)
    assert [tiny.num_parameters(m) for m in MODALITIES] == [1_968_325, 469_256, 2_104_709]


def test_offline_tokenizers_match_clip_and_roberta():
    clip = clip_tokenizer("clip_bpe", model_max_length=77)
    assert len(clip) == 49408
    ids = clip("a photo of a cat", padding="max_length", max_length=77).input_ids
    assert ids[:8] == [49406, 320, 1125, 539, 320, 2368, 49407, 49407]  # as CLIP's own SimpleTokenizer
    assert len(ids) == 77

    roberta = roberta_tokenizer("bytes", model_max_length=77)
    assert len(roberta) == 261
    assert (roberta.bos_token_id, roberta.pad_token_id, roberta.eos_token_id) == (0, 1, 2)
    assert roberta("hi").input_ids == [0, 75, 76, 2]


def test_toyworld_bpe_makes_the_worlds_words_single_tokens(tmp_path):
    from nextmm.toyworld.language import canonical_caption

    tokenizer = roberta_tokenizer("toyworld_bpe", model_max_length=77)
    assert len(tokenizer) <= 1024  # nextmm/conf/decoders/toyworld.yaml's CLAP vocab_size
    assert (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    ids = tokenizer(canonical_caption("beach", "audio")).input_ids
    assert tokenizer.convert_ids_to_tokens(ids) == ["<s>", "Ġwaves", "Ġcrashing", "Ġon", "Ġthe", "Ġshore", "</s>"]
    # words the world never writes still tokenize (byte fallback), and decoding gives the text back
    odd = tokenizer("zebra saxophone 42").input_ids
    assert tokenizer.unk_token_id not in odd and tokenizer.decode(odd, skip_special_tokens=True).strip() == "zebra saxophone 42"
    # a saved pipeline carries the tokenizer: it reloads with the same ids
    tokenizer.save_pretrained(tmp_path)
    assert type(tokenizer).from_pretrained(tmp_path)("birds singing").input_ids == tokenizer("birds singing").input_ids
    with pytest.raises(ConfigError, match="toyworld_bpe"):
        roberta_tokenizer("words")
