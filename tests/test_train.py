"""Training the miniature (a few steps on the CPU) and the shipped weights."""
import json
import shutil

import pytest

from pipeline import model, portraits, spec as specmod, train

SPEC = specmod.load("figures.toml")
# 128-pixel portraits (16x16 latents) keep the smoke test to seconds; the real run uses 512
TINY = train.Settings(images=24, size=128, vae_images=16, vae_steps=12, vae_batch=4, vae_crop=64,
                      unet_steps=40, unet_batch=8, warmup=4, checkpoint_every=20, unet_lr=2e-3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    record = train.run(root / "model", SPEC.prompts, TINY, "cpu", root / "work", workers=1)
    return root, record


def test_training_smoke_loss_falls_and_the_model_loads(trained, tmp_path):
    root, record = trained
    assert record["finished"] and record["unet_steps_done"] == TINY.unet_steps
    curve = [loss for _, loss in record["unet_curve"]]
    assert curve[-1] < curve[0]
    vae = [mse for _, mse in record["vae_curve"]]
    assert vae[-1] < vae[0]
    directory = root / "model"
    model.check_shipped(directory)  # SHA256SUMS written and matching
    saved = json.loads((directory / "training.json").read_text())
    assert saved["settings"]["unet_steps"] == TINY.unet_steps and saved["device"].startswith("cpu")
    info = model.prepare(str(directory), tmp_path / "model.json")
    comps = model.load(str(tmp_path / "model.json"), "cpu")  # the same from_pretrained path
    assert comps.vae.config.scaling_factor == pytest.approx(record["scaling_factor"])
    assert info["geometry"]["train_size"] == 512  # the config's sample_size, as SD 1.5's


TIMES = ("wall_seconds", "total_seconds", "stage_seconds", "render_and_encode_seconds",
         "resumed_from")


def weights(directory) -> dict:
    return {name: next((directory / name).glob("*.safetensors")).read_bytes()
            for name in ("unet", "vae", "text_encoder")}


@pytest.mark.parametrize("stop", [("vae", 1), ("vae", 7), ("vae", 12), ("unet", 1),
                                  ("unet", 13), ("unet", 20), ("unet", 39)])
def test_a_run_stopped_at_any_step_resumes_to_the_same_weights_curve_and_record(
        trained, tmp_path, stop):
    root, full = trained
    stopped = train.run(tmp_path / "model", SPEC.prompts, TINY, "cpu", tmp_path / "work",
                        workers=1, stop=stop)
    assert not stopped["finished"] and stopped["stage"] == stop[0]
    assert train.checkpoint_folder(tmp_path / "work", stop[0]) is not None
    resumed = train.run(tmp_path / "model", SPEC.prompts, TINY, "cpu", tmp_path / "work",
                        workers=1)
    assert resumed["finished"]
    assert weights(tmp_path / "model") == weights(root / "model")
    assert ({k: v for k, v in resumed.items() if k not in TIMES}
            == {k: v for k, v in full.items() if k not in TIMES})
    assert resumed["resumed_from"] == (["vae"] if stop[0] == "vae"
                                       else ["latents.pt", "unet", "vae"])
    # the time is the whole run's: every stage's, the stopped invocation's included
    assert resumed["total_seconds"] == pytest.approx(sum(resumed["stage_seconds"].values()),
                                                     abs=0.11)
    assert resumed["stage_seconds"]["unet"] > 0 and resumed["stage_seconds"]["vae"] > 0


def test_a_time_limit_stops_a_run_at_a_checkpoint_it_resumes_from(trained, tmp_path):
    root, full = trained
    stopped = train.run(tmp_path / "model", SPEC.prompts, TINY, "cpu", tmp_path / "work",
                        time_limit=1e-9, workers=1)
    assert not stopped["finished"] and stopped["stage"] == "vae"
    resumed = train.run(tmp_path / "model", SPEC.prompts, TINY, "cpu", tmp_path / "work",
                        workers=1)
    assert resumed["unet_curve"] == full["unet_curve"]
    assert weights(tmp_path / "model") == weights(root / "model")
    assert full["total_seconds"] == pytest.approx(sum(full["stage_seconds"].values()), abs=0.11)


@pytest.mark.parametrize("stage, change", [("vae", {"vae_lr": 5e-4}), ("vae", {"vae_crop": 32}),
                                           ("unet", {"unet_lr": 5e-4})])
def test_a_checkpoint_made_under_other_settings_is_refused_in_one_line(trained, tmp_path, stage,
                                                                        change):
    import dataclasses

    root, _ = trained
    work = tmp_path / "work"
    shutil.copytree(root / "work", work)
    if stage == "vae":
        (work / "latents.pt").unlink()  # else the VAE stage is not needed again
    other = dataclasses.replace(TINY, **change)
    with pytest.raises(train.CheckpointError) as err:
        train.run(tmp_path / "model", SPEC.prompts, other, "cpu", work, workers=1)
    message = str(err.value)
    assert "\n" not in message and str(work / stage) in message
    name, value = next(iter(change.items()))
    assert f"{name} {getattr(TINY, name)!r} -> {value!r}" in message and "delete it" in message
    assert not (tmp_path / "model").exists()  # nothing was saved under the new settings


def test_an_interrupted_checkpoint_write_leaves_the_previous_one(trained, tmp_path):
    root, _ = trained
    work = tmp_path / "work"
    shutil.copytree(root / "work", work)
    (work / "unet").rename(work / "unet.previous")  # stopped between the two renames
    (work / "unet.partial").mkdir()                 # with a half-written new one
    assert train.checkpoint_folder(work, "unet") == work / "unet.previous"
    again = train.run(tmp_path / "model", SPEC.prompts, TINY, "cpu", work, workers=1)
    assert again["finished"] and weights(tmp_path / "model") == weights(root / "model")


def test_run_leaves_the_callers_settings_alone(trained, tmp_path):
    import copy

    settings = copy.deepcopy(TINY)
    train.run(tmp_path / "model", SPEC.prompts, settings, "cpu", trained[0] / "work",
              workers=1)
    assert settings == TINY


def test_a_resumed_run_reads_its_latents_from_the_cache_and_a_snapshot_builds(trained, tmp_path):
    import dataclasses

    root, full = trained
    work = tmp_path / "work"
    shutil.copytree(root / "work", work)
    shutil.rmtree(work / "unet")  # the UNet stage again, from the cached VAE and latents
    again = train.run(tmp_path / "model", SPEC.prompts, TINY, "cpu", work, workers=1)
    assert again["resumed_from"] == ["latents.pt", "vae"]
    assert again["wall_seconds"] < again["total_seconds"]  # the cached stages' time counts
    assert again["unet_curve"] == full["unet_curve"] and again["vae_curve"] == full["vae_curve"]
    assert again["scaling_factor"] == full["scaling_factor"]

    snap = train.snapshot(tmp_path / "snap", work)  # settings from the checkpoint
    model.check_shipped(snap)
    index = json.loads((snap / "model_index.json").read_text())
    assert index["_name_or_path"] == f"preview-sd15-miniature-step{TINY.unet_steps}"
    info = model.prepare(str(snap), tmp_path / "model.json")
    comps = model.load(str(tmp_path / "model.json"), "cpu")
    assert comps.vae.config.scaling_factor == pytest.approx(full["scaling_factor"])
    assert info["geometry"]["train_size"] == 512
    assert weights(snap) == weights(tmp_path / "model")  # the finished run's own weights

    other = dataclasses.replace(TINY, images=20)  # another training set: the cache is not used
    assert train.latents_key(other, {}) != train.latents_key(TINY, {})
    shutil.rmtree(work / "unet")
    redone = train.run(tmp_path / "other", SPEC.prompts, other, "cpu", work, workers=1)
    src = train.source(other, SPEC.prompts)  # rendered and encoded again:
    import torch                             # the cache now holds the new key

    assert redone["finished"]
    assert torch.load(work / "latents.pt", map_location="cpu")["key"] == train.latents_key(
        other, src)


def test_a_snapshot_before_the_unet_stage_names_what_is_missing(tmp_path):
    with pytest.raises(SystemExit, match="no latents.pt or UNet checkpoint yet"):
        train.snapshot(tmp_path / "snap", tmp_path)


def test_the_shipped_weights_match_their_recorded_fingerprint():
    model.check_shipped()
    record = json.loads((model.PREVIEW_DIR / "training.json").read_text())
    assert record["finished"] and record["unet_steps_done"] == record["settings"]["unet_steps"]
    assert train.Settings(**record["settings"]) == train.Settings()  # the defaults are its recipe
    total = sum(p.stat().st_size for p in model.PREVIEW_DIR.rglob("*") if p.is_file())
    assert total <= 25 * 10**6


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_damaged_shipped_file_is_named_with_the_fix(tmp_path, damage):
    copy = shutil.copytree(model.PREVIEW_DIR, tmp_path / "preview")
    weights = copy / "unet" / "diffusion_pytorch_model.safetensors"
    if damage == "missing":
        weights.unlink()
    else:
        weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(model.ModelError) as err:
        model.check_shipped(copy)
    assert str(weights) in str(err.value) and "doit train" in str(err.value)
    assert damage in str(err.value)


def test_the_colour_term_makes_each_latent_pixel_carry_its_patch_colour(tmp_path):
    """The VAE trained with the colour term: its head is trained and checkpointed, and a least-
    squares linear map from one latent pixel to its patch's average colour fits better than
    without the term (same seed, data and steps)."""
    import torch
    from diffusers import AutoencoderKL

    from pipeline import portraits, preview_model

    _, images = train.render_images(train.source(TINY, SPEC.prompts), 0, 16, 0,
                                    size=128)
    residual = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        vae = AutoencoderKL(**preview_model.MINI["vae"])
        s = train.Settings(vae_steps=40, vae_batch=4, vae_crop=64, warmup=4, colour_weight=weight,
                           checkpoint_every=10**9)
        work = tmp_path / f"w{weight}"
        train.train_vae(vae, images, s, "cpu", work, float("inf"))
        head = work / "vae" / "model_1.safetensors"  # the checkpoint's second module
        assert head.exists() == bool(weight)  # trained (and kept) only when the term is on
        if weight:
            from safetensors.torch import load_file

            initial = train.colour_head(vae, s.seed).state_dict()
            state = load_file(head)
            assert any(not torch.equal(state[k], initial[k]) for k in initial)
        with torch.no_grad():
            x = train.to_tensor(images)
            z = vae.encode(x).latent_dist.mean
        colours = torch.nn.functional.avg_pool2d(x, 8).movedim(1, -1).reshape(-1, 3)
        pixels = torch.cat([z.movedim(1, -1).reshape(-1, 4), torch.ones(len(colours), 1)], 1)
        fit = torch.linalg.lstsq(pixels, colours).solution
        residual[weight] = torch.nn.functional.mse_loss(pixels @ fit, colours).item()
    assert residual[1.0] < 0.8 * residual[0.0], residual


def test_centring_makes_latents_zero_mean_and_leaves_every_decode_unchanged():
    import torch
    from diffusers import AutoencoderKL

    from pipeline import portraits, preview_model

    torch.manual_seed(0)
    vae = AutoencoderKL(**preview_model.MINI["vae"]).eval()
    with torch.no_grad():  # give the latents channel means far from zero, as the colour term does
        vae.quant_conv.bias[:4] += torch.tensor([0.5, -0.8, 0.3, 1.2])
    _, images = train.render_images(train.source(TINY, SPEC.prompts), 0, 6, 0, size=64)
    before = train.encode(vae, images, "cpu")
    assert before.mean((0, 2, 3)).abs().min() > 0.2
    with torch.no_grad():
        decoded = vae.decode(before).sample
    centred = train.centre_latents(vae, before)
    again = train.encode(vae, images, "cpu")
    torch.testing.assert_close(again, centred, atol=1e-5, rtol=1e-5)
    assert again.mean((0, 2, 3)).abs().max() < 1e-5
    with torch.no_grad():
        torch.testing.assert_close(vae.decode(centred).sample, decoded, atol=1e-5, rtol=1e-4)


def test_min_snr_weighting_leaves_noisy_steps_alone_and_discounts_nearly_clean_ones():
    import torch
    from diffusers.training_utils import compute_snr

    from pipeline import preview_model, schedule

    scheduler = train.noise_scheduler()  # SD 1.5's schedule, as the sampler's sigmas have it
    alphas = schedule.training_alphas_cumprod(preview_model.SCHEDULER)
    assert torch.allclose(scheduler.alphas_cumprod, alphas, rtol=1e-5)
    snr = compute_snr(scheduler, torch.arange(1000))
    w = train.snr_weights(snr, 5.0)
    assert torch.all(w[snr <= 5] == 1) and torch.all(w[snr > 5] < 1)
    assert w[0] < 0.05 and torch.all(w[1:] >= w[:-1])  # t=0 is nearly clean: SNR over a thousand
    g = torch.Generator().manual_seed(0)
    pred, noise = torch.randn(4, 4, 8, 8, generator=g), torch.randn(4, 4, 8, 8, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    plain = torch.nn.functional.mse_loss(pred, noise)
    assert train.epsilon_loss(pred, noise, snr[t]) == plain  # off: plain MSE
    assert torch.isclose(train.epsilon_loss(pred, noise, snr[t], 1e9), plain)
    per_item = (pred - noise).pow(2).mean((1, 2, 3))
    expected = (per_item * torch.tensor([w[0], w[10], 1.0, 1.0])).mean()
    assert torch.isclose(train.epsilon_loss(pred, noise, snr[t], 5.0), expected)


def test_bf16_encoding_changes_the_latents_only_within_bf16_precision():
    import torch
    from diffusers import AutoencoderKL

    from pipeline import portraits, preview_model

    torch.manual_seed(0)
    vae = AutoencoderKL(**preview_model.MINI["vae"]).eval()
    _, images = train.render_images(train.source(TINY, SPEC.prompts), 0, 4, 0, size=64)
    exact = train.encode(vae, images, "cpu")
    fast = train.encode(vae, images, "cpu", bf16=True)
    assert fast.dtype == torch.float32 and fast.shape == exact.shape
    rel = ((fast - exact).pow(2).mean().sqrt() / exact.std()).item()
    assert 0 < rel < 0.02, rel  # bf16 keeps ~3 significant digits; 0 would mean it was not used


def test_the_head_count_setting_reaches_every_attention_layer_and_the_saved_config(tmp_path):
    from diffusers import UNet2DConditionModel
    from diffusers.models.attention_processor import Attention

    from pipeline import preview_model

    assert train.unet_config(train.Settings(attention_heads=0)) == preview_model.MINI["unet"]
    config = train.unet_config(train.Settings(attention_heads=1))
    assert preview_model.MINI["unet"]["attention_head_dim"] == 4  # the setting copied, not edited
    unet = UNet2DConditionModel(**config)
    layers = [m for m in unet.modules() if isinstance(m, Attention)]
    assert layers and {m.heads for m in layers} == {1}
    unet.save_pretrained(tmp_path)
    assert UNet2DConditionModel.from_pretrained(tmp_path).config.attention_head_dim == 1


def test_a_model_trained_on_varied_captions_with_word_tokens_loads_and_reads_its_prompts(
        tmp_path):
    import dataclasses

    import torch

    from pipeline import captions, sampling

    s = dataclasses.replace(TINY, captions="varied", tokenizer="words", unet_steps=6,
                            vae_steps=4)
    record = train.run(tmp_path / "model", SPEC.prompts, s, "cpu", tmp_path / "work", workers=1)
    assert record["finished"] and record["distinct_captions"] > 12
    assert len(record["captions"]) == train.EXAMPLES and record["source"]["captions"] == "varied"
    info = model.prepare(str(tmp_path / "model"), tmp_path / "model.json")
    comps = model.load(str(tmp_path / "model.json"), "cpu")
    ids = comps.tokenizer(SPEC.prompts["miko"]).input_ids
    assert len(ids) <= 77 and comps.tokenizer.tokenize("blonde") == ["blonde</w>"]
    context = sampling.encode_prompts(comps, list(SPEC.prompts.values()))
    assert context.shape[0] == 2 and torch.isfinite(context).all()
    assert info["geometry"]["train_size"] == 512
    vocab_rows = comps.text_encoder.get_input_embeddings().weight.shape[0]
    assert vocab_rows == len(comps.tokenizer.get_vocab())
    assert set(captions.vocabulary(SPEC.prompts)) <= {
        t[:-4] for t in comps.tokenizer.get_vocab() if t.endswith("</w>")}


def test_an_unknown_caption_or_tokenizer_setting_is_named():
    with pytest.raises(ValueError, match="captions='random'"):
        train.Settings(captions="random")
    with pytest.raises(ValueError, match="tokenizer='wordpiece'"):
        train.Settings(tokenizer="wordpiece")
