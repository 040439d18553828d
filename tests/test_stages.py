"""Unit tests per stage: schedule, sampler, determinism, approximate decoder, overlays, files."""
import json
import math
import os
from pathlib import Path

import pytest
import torch

from pipeline import (approx_decoder, decode, detector, files, geometry, overlays, preview_model,
                      schedule, spec as specmod)
from pipeline.sampling import sample_dpmpp_2m

ROOT = Path(__file__).resolve().parents[1]

SD15_UNET = {"in_channels": 4, "sample_size": 64, "cross_attention_dim": 768,
             "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]}
SD15_VAE = {"block_out_channels": [128, 256, 512, 512], "scaling_factor": 0.18215}


def test_karras_sigmas_closed_form():
    s = schedule.karras_sigmas(22, 0.0292, 14.6146, 7.0)
    assert len(s) == 23 and s[-1] == 0
    for i in range(22):
        r = i / 21
        want = (14.6146 ** (1 / 7) + r * (0.0292 ** (1 / 7) - 14.6146 ** (1 / 7))) ** 7
        assert math.isclose(s[i].item(), want, rel_tol=1e-6)


def test_sd15_training_range_is_the_spec_range():
    cfg = preview_model.SCHEDULER  # SD 1.5's own scheduler config
    sig = schedule.training_sigmas(cfg)
    assert math.isclose(sig[-1].item(), 14.6146, rel_tol=1e-4)
    assert math.isclose(sig[0].item(), 0.0292, rel_tol=2e-3)
    assert schedule.check_range(cfg, 0.0292, 14.6146) == []
    assert schedule.check_range(cfg, 0.0292, 80.0)  # a wrong range is reported


def test_sigma_to_t_inverts_the_table():
    log_sigmas = schedule.training_sigmas(preview_model.SCHEDULER).log()
    for t in (0, 1, 250, 998, 999):
        assert schedule.sigma_to_t(log_sigmas[t].exp(), log_sigmas).item() == pytest.approx(t, abs=1e-3)


def test_dpmpp_2m_solves_the_gaussian_ode():
    # Data ~ N(0, s^2): the exact denoiser is x s^2/(s^2+sigma^2) and the probability-flow ODE maps
    # x(sigma_max) to x * s / sqrt(s^2 + sigma_max^2). A second-order solver's error must be small
    # at 22 steps and shrink about 4x (at least 3x) each time the step count doubles.
    s = 0.7

    def error(steps):
        sigmas = schedule.karras_sigmas(steps, 0.0292, 14.6146, 7.0).double()
        x = torch.randn(100, dtype=torch.float64) * 14.6146
        out = sample_dpmpp_2m(lambda x, sig: x * s ** 2 / (s ** 2 + sig ** 2), x, sigmas)
        exact = x * s / math.sqrt(s ** 2 + 14.6146 ** 2)
        return ((out - exact).abs() / exact.abs()).max().item()

    e11, e22, e44 = error(11), error(22), error(44)
    assert e22 < 0.015
    assert e22 < e11 / 3 and e44 < e22 / 3


def test_geometry_from_sd15_configs():
    g = geometry.from_configs(SD15_UNET, SD15_VAE)
    assert (g["vae_factor"], g["deepest_stride"], g["train_size"]) == (8, 8, 512)
    assert g["kernel_footprint_px"] == 192
    assert geometry.level_sizes(g, 768, 768) == [(96, 96), (48, 48), (24, 24), (12, 12)]
    assert geometry.level_sizes(g, 200, 200) == [(25, 25), (13, 13), (7, 7), (4, 4)]


def test_preview_model_is_deterministic_and_sd_shaped(tmp_path, preview_model_dir):
    again = preview_model.build(tmp_path / "again")
    for rel in ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
                "text_encoder/model.safetensors", "tokenizer/vocab.json"):
        assert files.sha256_file(again / rel) == files.sha256_file(preview_model_dir / rel)
    g = geometry.load(preview_model_dir)
    assert (g["vae_factor"], g["deepest_stride"], g["train_size"], g["latent_channels"]) == (8, 8, 512, 4)


def _components(model_dir, tmp_path):
    from pipeline import model

    out = tmp_path / "model.json"
    model.prepare(str(model_dir), out)
    model.load.cache_clear()
    return model.load(str(out), "cpu")


def test_same_generation_twice_gives_identical_bytes(tmp_path, preview_model_dir):
    from pipeline import sampling, spec as specmod

    spec = specmod.load(Path(__file__).resolve().parents[1] / "figures.toml")
    gen = specmod.Generation("miko", 715317074, 64, 64)
    first = sampling.sample(_components(preview_model_dir, tmp_path), spec, [gen])
    second = sampling.sample(_components(preview_model_dir, tmp_path), spec, [gen])
    assert torch.isfinite(first).all()
    assert torch.equal(first, second)
    comps = _components(preview_model_dir, tmp_path)
    png1 = files.png_bytes(decode.to_pil(decode.vae(first, comps.vae)[0]))
    png2 = files.png_bytes(decode.to_pil(decode.vae(second, comps.vae)[0]))
    assert png1 == png2
    other = sampling.sample(comps, spec, [specmod.Generation("miko", 1, 64, 64)])
    assert not torch.equal(first, other)  # the seed matters


def test_approx_decoder_learns_a_known_per_pixel_colour_map():
    torch.manual_seed(1)
    mix = torch.tensor([[0.8, -0.3, 0.2, 0.1], [0.1, 0.7, -0.4, 0.2], [-0.2, 0.1, 0.6, -0.5]])

    def truth(z):  # a smooth per-pixel colour map, the kind the VAE's colours follow
        return torch.tanh(torch.einsum("cd,bdhw->bchw", mix, z))

    z = torch.randn(4, 4, 16, 16)
    dec, losses = approx_decoder.distil(z, truth(z), epochs=400, lr=5e-2, seed=0)
    held = torch.randn(2, 4, 16, 16)
    assert losses[-1] < losses[0] / 20
    assert approx_decoder.psnr(dec(held), truth(held)) > 30
    # and it is per-pixel: changing one latent pixel changes exactly one 8x8 output block
    base = decode.approx(held[:1], dec)
    poked = held[:1].clone()
    poked[0, :, 5, 7] += 3
    diff = (decode.approx(poked, dec) - base)[0].abs().sum(0)
    changed = diff.nonzero()
    assert changed[:, 0].unique().tolist() == list(range(40, 48))
    assert changed[:, 1].unique().tolist() == list(range(56, 64))


def test_area_downsampled_targets():
    img = torch.zeros(1, 3, 16, 16)
    img[:, :, :8, :8] = 1
    t = approx_decoder.downsample_targets(img, 8)
    assert t.shape == (1, 3, 2, 2) and t[0, 0, 0, 0] == 1 and t[0, 0, 1, 1] == 0


def test_kernel_footprint_overlay():
    from PIL import Image

    img = Image.new("RGB", (768, 768), (0, 0, 0))
    g = geometry.from_configs(SD15_UNET, SD15_VAE)
    out = overlays.kernel_footprint(img, g, (0, 0))  # a corner: the square stays inside
    px = out.load()
    assert px[0, 0] == (255, 0, 255) and px[191, 100] == (255, 0, 255) and px[7, 100] == (255, 0, 255)
    assert px[8, 100] == (0, 0, 0) and px[192, 100] == (0, 0, 0) and px[100, 100] == (0, 0, 0)
    out = overlays.kernel_footprint(img, g, (400, 300)).load()  # centred on the point
    assert out[304, 300] == (255, 0, 255) and out[495, 300] == (255, 0, 255)
    assert out[400, 204] == (255, 0, 255) and out[400, 300] == (0, 0, 0)


def test_the_overlay_is_centred_on_the_subject():
    from pipeline import images, portraits

    spec = specmod.load(ROOT / "figures.toml")
    img = portraits.render(spec.prompts["miko"], 3)
    (face,) = detector.faces(__import__("numpy").asarray(img))
    x0, y0, x1, y1 = face["box"]
    centre, how = images.subject_centre(img, preview=True)
    assert centre == ((x0 + x1) // 2, (y0 + y1) // 2) and how == "the detected face"
    assert images.subject_centre(img, preview=False) == ((256, 256), "the image centre")


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "a.png"
    files.atomic_write(target, b"old")

    real_fsync = os.fsync

    def failing_fsync(fd):
        raise KeyboardInterrupt  # as if the run were killed mid-write

    os.fsync = failing_fsync
    try:
        with pytest.raises(KeyboardInterrupt):
            files.atomic_write(target, b"new" * 1000)
    finally:
        os.fsync = real_fsync
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]


def test_stale_temp_files_are_removed_but_not_those_of_a_running_writer(tmp_path):
    import os
    import subprocess
    import sys
    import time

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (tmp_path / f".x.png.{dead}.abc.tmp").write_bytes(b"half")        # its writer was killed
    (tmp_path / f".y.png.{os.getpid()}.abc.tmp").write_bytes(b"half")  # a build still writing
    old = tmp_path / ".z.png.abc.tmp"                                 # no pid: stale by age
    old.write_bytes(b"half")
    os.utime(old, (time.time() - 2 * files.STALE_SECONDS,) * 2)
    (tmp_path / ".w.png.abc.tmp").write_bytes(b"half")                # no pid, fresh: kept
    (tmp_path / "x.png").write_bytes(b"whole")
    assert files.remove_stale_temps(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".w.png.abc.tmp", f".y.png.{os.getpid()}.abc.tmp", "x.png"]


def test_model_argument_errors(tmp_path):
    from pipeline import model

    with pytest.raises(model.ModelError, match=r"model directory /no/such/sd15 does not exist"):
        model.resolve("/no/such/sd15")
    (tmp_path / "unet").mkdir()
    with pytest.raises(model.ModelError, match=r"has no vae/ folder"):
        model.resolve(str(tmp_path))
    assert model.resolve("stable-diffusion-v1-5/stable-diffusion-v1-5").kind == "hub"
    assert model.resolve("preview").preview


def test_batch_size_from_free_memory():
    from pipeline.sampling import MAX_BATCH, MEMORY_SHARE, fit_batch

    gib = 2**30
    assert fit_batch(80 * gib, 2 * gib, 8) == 8                 # everything fits
    assert fit_batch(80 * gib, 2 * gib, 100) == MAX_BATCH      # capped
    assert fit_batch(10 * gib, 2 * gib, 8) == int(10 * MEMORY_SHARE // 2)  # memory-bound
    assert fit_batch(1 * gib, 4 * gib, 8) == 1                 # never zero


def test_a_generation_does_not_depend_on_its_batch(preview_model_dir, tmp_path):
    # Sampling one seed alone and beside another seed gives the same latents to fp tolerance;
    # the manifest records the batch anyway (test_build checks it).
    from pipeline import spec as specmod
    from pipeline.sampling import sample

    comps = _components(preview_model_dir, tmp_path)
    spec = specmod.load(Path(__file__).resolve().parents[1] / "figures.toml")
    a = specmod.Generation("miko", 715317074, 128, 128)
    b = specmod.Generation("blonde", 86322125, 128, 128)
    alone = sample(comps, spec, [a])[0]
    together = sample(comps, spec, [b, a])[1]
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(sample(comps, spec, [b])[0], alone)  # different seeds differ


def test_written_files_get_the_mode_plain_open_gives(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        path = files.atomic_write(tmp_path / "a.png", b"x")
        assert (path.stat().st_mode & 0o777) == 0o644  # readable by a web server's user
        os.umask(0o077)
        assert (files.atomic_write(tmp_path / "b.json", b"{}").stat().st_mode & 0o777) == 0o600
    finally:
        os.umask(old)


def test_the_model_gets_its_own_attention_back_after_a_variant_batch(tmp_path, preview_model_dir):
    """The loaded model is shared by every task of a run: after a variant batch (sampled, or
    probed) the next batch must find the model's own processors, whatever its size."""
    from pipeline import probe, sampling, spec as specmod

    spec = specmod.load(Path(__file__).resolve().parents[1] / "figures.toml")
    comps = _components(preview_model_dir, tmp_path)
    own = {k: type(v) for k, v in comps.unet.attn_processors.items()}
    sampling.sample(comps, spec, [specmod.Generation("miko", 1, 128, 128, "logit-scale")])
    assert {k: type(v) for k, v in comps.unet.attn_processors.items()} == own
    probe.measure(comps, spec, [specmod.Generation("miko", 1, 128, 128, "topk-mask")])
    assert {k: type(v) for k, v in comps.unet.attn_processors.items()} == own
    # a different size runs on the restored model (a variant left behind raises "expected N keys")
    steps = []
    z = sampling.sample(comps, spec, [specmod.Generation("miko", 1, 64, 64)],
                        on_step=lambda: steps.append(1))
    assert torch.isfinite(z).all()
    assert len(steps) == spec.sampling["steps"]  # the progress bar advances once per evaluation


def test_caption_fields_the_spec_allows_are_what_the_vae_summary_fills(tmp_path):
    from pipeline import emit
    from pipeline.spec import CAPTION_FIELDS

    side = {"threshold": 0.02, "changed_outside": 0.1, "mean_change_outside": 0.01, "logvar": -3}
    report = {"experiment": {"anomalous": side, "ordinary": side}, "images": [{"logvar_min": -3.0}, {"logvar_min": -4.0}],
              "flagged_images": 1, "floor": -30.0, "subject_flagged": True,
              "ceiling": 20.0, "vae": {"id": "v", "scaling_factor": 0.18215},
              "config": {"perturbation": 2.0, "floor_margin": 0.5, "robust_z": 8.0,
                         "size": [512, 512]}}
    path = tmp_path / "anomaly.json"
    path.write_text(json.dumps(report))
    assert sorted(emit.vae_summary(path)) == sorted(CAPTION_FIELDS)


def test_the_latent_cache_key_follows_code_not_comments(tmp_path):
    import shutil

    from pipeline import sampling

    src = Path(sampling.__file__).parent
    for name in sampling.SAMPLING_PATH:
        shutil.copy(src / name, tmp_path / name)
    before = sampling.code_digest(str(tmp_path))
    assert before == sampling.code_digest(str(src))
    target = tmp_path / "schedule.py"
    text = target.read_text()
    edited = text.replace('"""', '"""An edited docstring. ', 1) + "\n# a new comment\n"
    target.write_text(edited)
    sampling.code_digest.cache_clear()
    assert sampling.code_digest(str(tmp_path)) == before  # comments and docstrings: same latents
    target.write_text(edited + "\nEXTRA_CONSTANT = 1\n")
    sampling.code_digest.cache_clear()
    assert sampling.code_digest(str(tmp_path)) != before  # code that runs: sampled again


def test_the_latent_cache_key_holds_versions_dtype_and_layout():
    from pipeline.sampling import cache_key

    prov = {"seed": 1, "model": "m@1", "device": "cpu", "dtype": "float32",
            "layout": "contiguous_format", "speedups": [], "torch": "2.13.0",
            "diffusers": "0.42.1", "code": "c", "autocast": None, "cpu_threads": 2}
    key = cache_key(prov)
    assert cache_key({**prov, "batch": ["a", "b"]}) == key  # the batch is recorded, not keyed
    for field, other in (("torch", "2.14.0"), ("diffusers", "0.43.0"), ("dtype", "float16"),
                         ("layout", "channels_last"), ("device", "cuda (H100)"), ("code", "d"),
                         ("speedups", ["channels_last", "compiled"]), ("autocast", "bfloat16"),
                         ("cpu_threads", 1)):
        assert cache_key({**prov, field: other}) != key, field


@pytest.mark.parametrize("lowest, changed, ratio, keys", [
    (-29.6, 0.02, 6.0, ("reached", "global")),
    (-29.4, 0.02, 6.0, ("not-reached", "global")),     # just above floor + margin
    (-8.9, 0.009, 6.0, ("not-reached", "local")),      # too few pixels change
    (-8.9, 0.02, 4.9, ("not-reached", "local")),       # not far above the ordinary position
    (-30.0, 0.0018, 1.3, ("reached", "local")),
])
def test_the_vae_verdict_sits_on_the_right_side_of_its_thresholds(lowest, changed, ratio, keys):
    from pipeline import emit

    assert (emit.GLOBAL_SHARE, emit.GLOBAL_RATIO) == (0.01, 5.0)
    r = {"images": [{"logvar_min": -5.0}, {"logvar_min": lowest}], "floor": -30.0,
         "config": {"floor_margin": 0.5}, "experiment": {"anomalous": {"changed_outside": changed}}}
    v = emit.vae_verdict(r, ratio)
    assert (v["floor_key"], v["change_key"]) == keys


def test_plot_text_is_at_least_eleven_pixels_where_the_page_shows_it():
    from matplotlib.text import Text

    from pipeline import plots

    plt = plots._pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    for ax in axes:
        ax.plot([0, 1], [0, 1], label="a line")
        ax.set_title("title", fontsize=7)
        ax.legend(fontsize=6)
    plots.legible(figure, 720)
    shown = [t.get_fontsize() / 72 * plots.DPI * 720 / (14 * plots.DPI)
             for t in figure.findobj(Text) if t.get_text()]
    assert shown and min(shown) >= plots.MIN_TEXT_PX - 1e-6
    plt.close(figure)
