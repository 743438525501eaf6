"""The decoder pretraining recipe: a few steps of every phase on a tiny world write pipeline folders that
nextmm.parts.decoders loads and renders; the losses fall when overfitting; the vocoder inverts the VAE's own mels."""

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from nextmm import cli
from nextmm.cli import compose_config
from nextmm.data.decoder_media import DecoderMediaSpec, load_decoder_media
from nextmm.modality import MODALITIES
from nextmm.parts.decoders import Decoders, build_pipeline, count_parameters
from nextmm.toyworld import pretrain_decoders, render_sample
from nextmm.toyworld.build import build
from nextmm.toyworld.features import (
    NearestCentroid,
    image_features,
    nearest_centroid_accuracy,
    video_features,
)

CONCEPTS = ["beach", "night"]
FEW_STEPS = ["vae.steps=3", "per_modality.image.vae.steps=3", "vae.batch_size=2", "vocoder.steps=2", "vocoder.batch_size=2", "clap.steps=2",
             "clap.batch_size=4", "unet.steps=3",
             "unet.batch_size=2", "per_modality.video.unet.batch_size=2", "evaluation.samples_per_concept=1",
             "data.num_workers=1", "logging.every=1",
             *(f"decoders.{m}.num_inference_steps=2" for m in MODALITIES)]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build(tmp_path_factory.mktemp("toyworld") / "world", seed=0, samples=2, instructions=1, eval_samples=1,
                 eval_prompts=1, concepts=CONCEPTS, workers=1)


@pytest.fixture(scope="module")
def run(world, tmp_path_factory):
    output = tmp_path_factory.mktemp("decoders")
    cfg = compose_config("stage/pretrain_decoders", [f"data_root={world}", f"output_dir={output}", *FEW_STEPS])
    torch.manual_seed(0)
    return pretrain_decoders.train(cfg), cfg, output


def test_folders_load_through_decoders_and_render(run):
    result, cfg, output = run
    metrics = json.loads((output / "metrics.json").read_text())
    assert set(metrics) == set(MODALITIES) and (output / "config.yaml").is_file()
    for modality in MODALITIES:
        settings = {k: v for k, v in OmegaConf.to_container(cfg.decoders[modality]).items() if k != "components"}
        decoders = Decoders({modality: {**settings, "path": str(output / modality)}})
        conditioning = decoders.encode_text(modality, ["waves crashing on the shore"])
        assert conditioning.shape[1:] == tuple(settings["conditioning_shape"])
        [medium] = decoders.render(modality, conditioning, num_inference_steps=2, guidance_scale=2.0,
                                   generator=torch.Generator().manual_seed(0), progress=False)
        shape = {"image": (64, 64, 3), "audio": (32000,), "video": (8, 32, 32, 3)}[modality]
        assert np.asarray(medium).shape == shape and np.isfinite(np.asarray(medium, dtype=np.float32)).all()
        # the scaling factor measured on the training media is the one the folder keeps
        pipe = decoders.pipeline(modality)
        assert pipe.vae.config.scaling_factor == pytest.approx(metrics[modality]["scaling_factor"])
        report = metrics[modality]
        assert set(report["per_concept"]) == set(CONCEPTS)  # each concept's share of renders classified as it
        assert report["accuracy"] == pytest.approx(np.mean(list(report["per_concept"].values())))
        phases = {"vae", "unet", "clap"} if modality == "audio" else {"vae", "unet"}  # Griffin-Lim: no weights
        assert set(report["losses"]) == phases
        assert all(np.isfinite(list(loss.values())).all() for loss in report["losses"].values())


def test_a_decoder_comes_out_the_same_whatever_is_trained_with_it(run, world, tmp_path):
    """Each modality draws from its own random streams: the video decoder trained alone is the one trained after
    the image and audio decoders, tensor for tensor (so a change to one decoder's recipe leaves the others be)."""
    _, _, together = run
    cfg = compose_config("stage/pretrain_decoders", [f"data_root={world}", f"output_dir={tmp_path}",
                                                     "modalities=[video]", *FEW_STEPS])
    pretrain_decoders.train(cfg)
    files = sorted(path.relative_to(together / "video") for path in (together / "video").rglob("*.safetensors"))
    assert len(files) == 3  # unet, vae, text_encoder
    for name in files:
        alone, with_others = load_file(tmp_path / "video" / name), load_file(together / "video" / name)
        assert alone.keys() == with_others.keys()
        assert all(torch.equal(alone[key], with_others[key]) for key in alone), name


def test_a_killed_run_resumes_to_the_uninterrupted_decoders(run, world, tmp_path, kill, capsys):
    """Killed mid-phase (image unet, from its step-2 checkpoint), then between phases (audio: vae done, clap
    not begun) after a finished modality (image, not trained again): resume=true ends with the weights, losses and
    scaling factors of the uninterrupted run, tensor for tensor."""
    _, _, straight = run
    argv = [f"data_root={world}", f"output_dir={tmp_path}", "modalities=[image,audio]", "checkpoint.every=2",
            *FEW_STEPS]
    kill.after(6)  # image: vae 3 steps, unet 3: killed at the unet's last step, its checkpoint at step 2
    with pytest.raises(kill.error, match="step 3 of image unet"):
        pretrain_decoders.train(compose_config("stage/pretrain_decoders", argv))
    capsys.readouterr()  # the killed run's progress bars
    with pytest.raises(SystemExit) as exit_:  # continued only when asked
        cli.run("stage/pretrain_decoders", pretrain_decoders.main, argv)
    assert exit_.value.code == cli.USAGE_ERROR
    err = capsys.readouterr().err
    assert "already holds checkpoints: pass resume=true" in err and err.count("\n") == 1
    kill.after(1 + 3 + 1)  # image unet step 3; audio vae 3 steps; audio clap step 1, none of it kept
    with pytest.raises(kill.error, match="step 1 of audio clap"):
        pretrain_decoders.train(compose_config("stage/pretrain_decoders", [*argv, "resume=true"]))
    assert (tmp_path / "checkpoints" / "image" / pretrain_decoders.FINISHED).is_file()
    written = (tmp_path / "image" / "model_index.json").stat().st_mtime_ns
    kill.after(1)  # the image decoder is done: the first step of this run is the audio clap's
    with pytest.raises(kill.error, match="step 1 of audio clap"):
        pretrain_decoders.train(compose_config("stage/pretrain_decoders", [*argv, "resume=true"]))
    pretrain_decoders.train(compose_config("stage/pretrain_decoders", [*argv, "resume=true"]))
    assert (tmp_path / "image" / "model_index.json").stat().st_mtime_ns == written  # neither written nor checked again

    expected, resumed = (json.loads((out / "metrics.json").read_text()) for out in (straight, tmp_path))
    assert set(resumed) == {"image", "audio"}
    for modality in ("image", "audio"):
        for key in ("losses", "scaling_factor", "accuracy", "per_concept"):
            assert resumed[modality][key] == expected[modality][key], (modality, key)
        files = sorted(path.relative_to(straight / modality) for path in (straight / modality).rglob("*.safetensors"))
        assert len(files) == 3  # unet, vae, text_encoder (audio's vocoder has no weights)
        for name in files:
            mine, theirs = load_file(tmp_path / modality / name), load_file(straight / modality / name)
            assert all(torch.equal(mine[key], theirs[key]) for key in theirs), name
    kept = sorted(p.name for p in (tmp_path / "checkpoints" / "audio" / "vae").iterdir())
    assert kept == ["step-00000002", "step-00000003"]  # every 2 steps and at a phase's end, the newest 2


def test_a_killed_vocoder_phase_resumes_with_its_discriminators(run, world, tmp_path, kill):
    """The discriminators and their optimizer travel in the vocoder phase's checkpoints."""
    _, _, first = run
    argv = [f"data_root={world}", "modalities=[audio]", "phases=[vocoder]", f"decoders.audio.path={first / 'audio'}",
            "decoders=toyworld_hifigan", "vocoder.adversarial.weight=0.05", "checkpoint.every=1", *FEW_STEPS,
            "vocoder.steps=3"]
    straight = pretrain_decoders.train(compose_config("stage/pretrain_decoders", [*argv, f"output_dir={tmp_path / 'a'}"]))
    kill.after(3)  # the checkpoint of step 2 holds the discriminators after 2 updates
    with pytest.raises(kill.error, match="step 3 of audio vocoder"):
        pretrain_decoders.train(compose_config("stage/pretrain_decoders", [*argv, f"output_dir={tmp_path / 'b'}"]))
    resumed = pretrain_decoders.train(compose_config("stage/pretrain_decoders",
                                                     [*argv, f"output_dir={tmp_path / 'b'}", "resume=true"]))
    assert resumed["metrics"]["audio"]["losses"] == straight["metrics"]["audio"]["losses"]
    [mine], [theirs] = ((out / "audio" / "vocoder").glob("*.safetensors") for out in (tmp_path / "b", tmp_path / "a"))
    mine, theirs = load_file(mine), load_file(theirs)
    assert all(torch.equal(mine[key], theirs[key]) for key in theirs)


def test_phases_give_a_trained_folder_a_hifigan_and_keep_the_rest(run, world, tmp_path):
    """The folder has toyworld's Griffin-Lim; decoders=toyworld_hifigan names a SpeechT5HifiGan, which the vocoder
    phase builds and trains in its place. The VAE, UNet and CLAP stay to the byte."""
    _, _, first = run
    cfg = compose_config("stage/pretrain_decoders", [
        f"data_root={world}", f"output_dir={tmp_path}", "modalities=[audio]", "phases=[vocoder]",
        "decoders=toyworld_hifigan", f"decoders.audio.path={first / 'audio'}", *FEW_STEPS])
    pretrain_decoders.train(cfg)
    for part in ("vae", "unet", "text_encoder"):
        [before], [after] = ((root / "audio" / part).glob("*.safetensors") for root in (first, tmp_path))
        before, after = load_file(before), load_file(after)
        assert all(torch.equal(before[key], after[key]) for key in before), part
    index = json.loads((tmp_path / "audio" / "model_index.json").read_text())
    assert index["vocoder"] == ["transformers", "SpeechT5HifiGan"]
    assert list((tmp_path / "audio" / "vocoder").glob("*.safetensors"))
    metrics = json.loads((tmp_path / "metrics.json").read_text())["audio"]
    assert set(metrics["losses"]) == {"vocoder"} and "adversarial" not in metrics["losses"]


def test_a_subset_of_phases_needs_a_folder_to_start_from(world, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.run("stage/pretrain_decoders", pretrain_decoders.main,
                [f"data_root={world}", f"output_dir={tmp_path / 'out'}", "modalities=[audio]", "phases=[vocoder]"])
    assert exit_.value.code == cli.USAGE_ERROR
    err = capsys.readouterr().err
    assert "set decoders.audio.path=" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_band_loss_sees_an_offset_below_the_lowest_band():
    time = torch.arange(8192) / 16000
    wave = 0.3 * torch.sin(2 * torch.pi * 300 * time)[None]
    assert pretrain_decoders.band_loss(wave, wave, 16000) == 0
    # a DC offset: all of it below 30 Hz, where the 32 log-spaced bands alone would not see it
    assert pretrain_decoders.band_loss(wave + 0.05, wave, 16000) > 0.05


def test_vocoder_learns_one_batch_with_the_discriminators(world):
    torch.manual_seed(0)
    cfg = compose_config("stage/pretrain_decoders", ["data_root=x", "output_dir=y", "decoders=toyworld_hifigan"])
    vocoder = build_pipeline("audio", cfg.decoders.audio).vocoder.train()
    spec = DecoderMediaSpec("audio", sample_rate=16000, frames=128, mel_bins=64, hop_length=256)
    paths = [world / scene["audio"] for scene in pretrain_decoders.load_scenes(world)[:2]]
    waves = pretrain_decoders.load_waveforms(spec, paths)[:, 256 * 40: 256 * 56]  # 16 frames each
    log_mel = pretrain_decoders.LogMel(spec)
    mels = log_mel(waves)
    settings = OmegaConf.merge(cfg.vocoder.adversarial, {"weight": 0.05})  # the weight tried (0: no discriminators)
    adversary = pretrain_decoders.Adversary(settings, torch.device("cpu"))
    optimizer = torch.optim.Adam(vocoder.parameters(), lr=2e-3)
    spectral = []
    for _ in range(25):
        output = vocoder(mels)
        terms = pretrain_decoders.vocoder_loss(output, waves, log_mel, 16000, band_weight=3.0)
        gan = adversary.terms(output, waves)
        judged = [p.grad.clone() for p in adversary.judge.parameters()]
        optimizer.zero_grad()
        (terms["loss"] + gan["loss"]).backward()
        optimizer.step()
        spectral.append(float(terms["loss"].detach()))
        # the generator's terms reach the vocoder, not the discriminators
        assert all(torch.equal(p.grad, g) for p, g in zip(adversary.judge.parameters(), judged))
        assert all(p.grad is not None for p in vocoder.parameters())
    assert np.isfinite(spectral).all() and spectral[-1] < 0.8 * spectral[0], spectral
    assert float(gan["discriminator"]) > 0 and set(gan) == {"loss", "adversarial", "feature_matching", "discriminator"}


def test_scaling_factor_is_one_over_the_latent_std(run, world):
    _, cfg, output = run
    pipe = build_pipeline("image", {"path": str(output / "image")})
    scenes = pretrain_decoders.load_scenes(world)
    spec = DecoderMediaSpec("image", height=64, width=64)
    media = torch.stack([load_decoder_media(spec, world / scene["image"]) for scene in scenes])
    with torch.no_grad():
        posterior = pipe.vae.encode(media).latent_dist
    spread = float(torch.cat([posterior.mean + posterior.std * torch.randn_like(posterior.std)
                              for _ in range(20)]).std())
    assert pipe.vae.config.scaling_factor == pytest.approx(1 / spread, rel=0.1)


def test_log_mel_is_the_audio_vaes_data(world):
    scene = pretrain_decoders.load_scenes(world)[0]
    spec = DecoderMediaSpec("audio", sample_rate=16000, frames=128, mel_bins=64, hop_length=256)
    waves = pretrain_decoders.load_waveforms(spec, [world / scene["audio"]])
    assert waves.shape == (1, 128 * 256)
    expected = load_decoder_media(spec, world / scene["audio"])  # (1, T, M)
    assert torch.allclose(pretrain_decoders.LogMel(spec)(waves), expected, atol=1e-4)


def test_losses_fall_when_overfitting_one_batch():
    torch.manual_seed(0)
    cfg = compose_config("stage/pretrain_decoders", ["data_root=x", "output_dir=y"]).decoders.image
    pipe = build_pipeline("image", cfg)
    scenes = [render_sample(c, seed=0).image[::2, ::2] for c in ("beach", "night")]  # (32, 32, 3) uint8 each
    images = torch.from_numpy(np.stack(scenes)).permute(0, 3, 1, 2).float() / 127.5 - 1  # (2, 3, 32, 32)

    def overfit(module, loss, steps=30):
        optimizer = torch.optim.Adam(module.parameters(), lr=2e-3)
        losses = []
        for _ in range(steps):
            torch.manual_seed(1)  # the same noise and timesteps each step: one fixed problem to fit
            value = loss()["loss"]
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
            losses.append(value.item())
        assert np.isfinite(losses).all() and losses[-1] < 0.8 * losses[0], losses
        return losses

    pipe.vae.train()
    overfit(pipe.vae, lambda: pretrain_decoders.vae_loss(pipe.vae, images, kl_weight=1e-4))
    latents = torch.randn(2, 4, 16, 16)
    scheduler = pretrain_decoders.DDPMScheduler.from_config(pipe.scheduler.config)
    unet_and_text = torch.nn.ModuleList([pipe.unet.train(), pipe.text_encoder.train()])
    overfit(unet_and_text, lambda: pretrain_decoders.unet_loss(
        pipe, scheduler, "image", latents, ["a beach", ""], snr_gamma=5.0))


def test_clap_phase_separates_the_concepts_and_the_unet_phase_keeps_it(world, tmp_path):
    """AudioLDM's only conditioning is CLAP's pooled embedding: at random init every caption gets nearly the same
    one. The clap phase must pull the concepts apart, and the UNet phase must leave the text encoder alone."""
    @torch.no_grad()
    def embeddings(pipe):
        texts = ["waves crashing on the shore", "the sound of waves crashing on the shore", "crickets chirping at night"]
        return pipe._encode_prompt(texts, torch.device("cpu"), 1, False)

    def trained_pipeline(unet_steps: int):
        cfg = compose_config("stage/pretrain_decoders", [
            f"data_root={world}", f"output_dir={tmp_path / str(unet_steps)}", "modalities=[audio]", *FEW_STEPS,
            "clap.steps=60", "clap.batch_size=8", "clap.lr=5e-3", f"unet.steps={unet_steps}"])
        torch.manual_seed(0)
        pretrain_decoders.train(cfg)
        folder = str(tmp_path / str(unet_steps) / "audio")
        return cfg, Decoders({"audio": {**OmegaConf.to_container(cfg.decoders.audio), "path": folder}}).pipeline("audio")

    cfg, pipe = trained_pipeline(unet_steps=3)
    untrained = embeddings(build_pipeline("audio", cfg.decoders.audio))
    assert float(untrained[0] @ untrained[2]) > 0.95  # why the phase exists
    trained = embeddings(pipe)
    assert float(trained[0] @ trained[1]) > 0.9  # one concept, two wordings: together
    assert float(trained[0] @ trained[2]) < 0.5  # beach and night: apart
    _, fewer_unet_steps = trained_pipeline(unet_steps=1)  # the same clap phase; the UNet phase must not move CLAP
    assert torch.equal(embeddings(fewer_unet_steps), trained)


def test_bad_data_root_is_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.run("stage/pretrain_decoders", pretrain_decoders.main,
                [f"data_root={tmp_path / 'nowhere'}", f"output_dir={tmp_path / 'out'}"])
    assert exit_.value.code == cli.USAGE_ERROR
    err = capsys.readouterr().err
    assert "scenes.json not found" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_toyworld_decoders_stay_small():
    cfg = compose_config("stage/pretrain_decoders", ["data_root=x", "output_dir=y"])
    assert list(cfg.modalities) == list(MODALITIES)
    total = sum(sum(count_parameters(build_pipeline(m, cfg.decoders[m], empty=True).components).values())
                for m in MODALITIES)
    # float32 safetensors of all three folders; nextmm/toyworld/checkpoint/ may hold 40 MB, of which the encoder
    # (8.6 MB), the LLM (4.4 MB) and the trained parts (about 1.5 MB) take about 15
    assert total * 4 < 25e6


def test_features_and_nearest_centroid():
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    large = small.repeat(2, axis=0).repeat(2, axis=1)  # the same picture at 64 x 64
    assert np.allclose(image_features(small), image_features(large))
    assert np.allclose(video_features(np.stack([small, small])), image_features(small))
    train = np.array([[0.0, 0.0], [0.2, 0.0], [5.0, 5.0], [5.2, 5.0]])
    labels = np.array(["a", "a", "b", "b"])
    assert list(NearestCentroid().fit(train, labels).predict(np.array([[4.0, 4.5], [0.1, 0.3]]))) == ["b", "a"]
    assert nearest_centroid_accuracy(train, train, labels) == 1.0
