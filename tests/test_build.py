"""End-to-end: the default article built by `doit` with the preview model (see conftest.project),
then what the built site holds, and how the build reacts to edits and bad input."""
from __future__ import annotations

import hashlib
import html
import json
import math
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from conftest import ROOT, copy_project, doit, executed
from pipeline import (detector, emit, evaluate, freeze, geometry, machine, model, speedups,
                      spec as specmod)

ARTICLE = "public/sd15-image-sizes/index.html"


def page(project: Path) -> str:
    return (project / ARTICLE).read_text(encoding="utf-8")


def figure_html(text: str, fid: str) -> str:
    m = re.search(rf'<figure[^>]*data-figure="{re.escape(fid)}".*?</figure>', text, re.S)
    assert m, f"figure {fid} not in the page"
    return m.group(0)


def test_every_figure_of_the_spec_is_on_the_page(project):
    spec = specmod.load(project / "figures.toml")
    text = page(project)
    for fig in spec.figures:
        block = figure_html(text, fig.id)
        imgs = re.findall(r"<img ", block)
        assert len(imgs) == len(fig.files()), fig.id
        if fig.plot in specmod.VAE_PLOTS:
            shown = [im.gen for im in spec.vae_anomaly_images()]
        else:
            shown = fig.cells or [g for g in spec.probe_generations() if
                                  (g.width, g.height) in fig.sizes and g.variant in fig.variants]
        assert shown, fig.id
        for g in shown:
            assert g.id in block


def test_every_referenced_file_exists_and_nothing_is_external(project):
    public = project / "public"
    pages = list(public.rglob("*.html"))
    assert len(pages) >= 2
    refs = 0
    for p in pages:
        text = p.read_text(encoding="utf-8")
        for tag, attr, url in re.findall(r'<(\w+)\s[^>]*?\b(src|href)="([^"]+)"', text):
            if re.match(r"^(https?:)?//", url):
                # a citation the reader may follow is fine; nothing is loaded from elsewhere
                assert tag == "a" and attr == "href", f"{p.name}: external {tag} {attr} {url}"
                continue
            if url.startswith("#"):
                continue
            path = public / url.lstrip("/").split("#")[0]
            if url.endswith("/"):
                path = path / "index.html"
            assert path.exists(), f"{p.name} references missing {url}"
            refs += 1
        assert "<script" not in text  # nothing to fetch, nothing to run
    assert refs > 90


def test_thumbnails_are_real_downscaled_files_linking_to_full_images(project):
    from PIL import Image

    spec = specmod.load(project / "figures.toml")
    text = page(project)
    for fig in spec.figures:
        block = figure_html(text, fig.id)
        links = re.findall(r'<a class="thumb" href="([^"]+)"[^>]*><img src="([^"]+)" '
                           r'width="(\d+)" height="(\d+)"', block)
        assert len(links) == len(fig.files())
        for full, thumb, w, h in links:
            assert full != thumb
            with Image.open(project / "public" / full.lstrip("/")) as im_full, \
                    Image.open(project / "public" / thumb.lstrip("/")) as im_thumb:
                assert im_thumb.width == fig.thumb == int(w) and im_thumb.height == int(h)
                assert im_full.width > im_thumb.width or fig.thumb >= im_full.width


def test_images_have_the_size_of_their_generation_and_decoder(project):
    from PIL import Image

    spec = specmod.load(project / "figures.toml")
    for im in spec.images():
        with Image.open(project / "static/images" / im.file) as f:
            assert f.size == (im.gen.width, im.gen.height), im.file


def test_manifest_records_what_made_each_image(project):
    manifest = json.loads((project / "static/images/manifest.json").read_text())
    spec = specmod.load(project / "figures.toml")
    names = ({im.file for f in spec.figures for im in f.files()}
             | {im.thumb_file(w) for im, w in spec.thumbs()})
    evaluation = json.loads((project / "build/eval/evaluation.json").read_text())
    sheets = {c["sheet"] for c in evaluation["cells"]}
    plots = {f for p in specmod.EVALUATION_PLOTS
             for f in (p.file, p.thumb_file(specmod.EVALUATION_PLOT_THUMB))}
    assert set(manifest["images"]) == names | sheets | plots
    for name, rec in manifest["images"].items():
        data = (project / "static/images" / name).read_bytes()
        assert rec["sha256"] == hashlib.sha256(data).hexdigest()
        if name in sheets | plots:  # the evaluation's: what it measured, with which detector
            assert rec["detector"] == evaluation["detector"] and rec["model"] == evaluation["model"]
            assert len(rec["generations"] if name in sheets else rec["inputs"]) >= 1
            continue
        keys = (("plot", "figure", "inputs") if name.startswith("plot.") else
                ("seed", "width", "height", "variant", "decoder", "batch"))
        for key in keys + ("prompt_key", "steps", "sampler", "guidance", "model", "device"):
            assert key in rec, (name, key)
        assert rec["steps"] == 22 and rec["sampler"] == "dpmpp_2m" and rec["guidance"] == 7.5
    overlay = [r for n, r in manifest["images"].items() if n.endswith("kernel_footprint.png")]
    assert len(overlay) == 2 and all(r["decoder"] == "approx" for r in overlay)


def test_preview_banner_and_provenance_are_on_the_page(project):
    text = page(project)
    assert 'id="preview-banner"' in text and "preview model" in text
    record = json.loads((project / "models/preview/training.json").read_text())
    banner = re.search(r'<aside class="preview-banner".*?</aside>', text, re.S).group(0)
    assert f"trained for {record['unet_steps_done']} UNet steps" in " ".join(banner.split())
    assert f"under {record['distinct_captions']} distinct captions" in " ".join(banner.split())
    assert text.count('<details class="provenance">') == len(specmod.load(project / "figures.toml").figures)
    assert "<td>715317074</td>" in text and not re.search(r"\d\.\d+e\+\d", text)  # no 7.15e+08
    assert re.search(r'title="miko · seed 715317074 · 768×768 · 22 steps dpmpp_2m \(karras\) · '
                     r'CFG 7.5 · variant usual · VAE decode · preview-sd15-miniature@', text)


def test_numbers_come_from_the_model_config(project):
    text = page(project)
    table = re.search(r'<table class="geometry".*?</table>', text, re.S).group(0)
    for cell in ("64×64", "96×96", "8×8", "12×12"):
        assert f"<td>{cell}</td>" in table
    flat = " ".join(text.split())
    assert "covers a square 192 pixels on a side" in flat
    assert "tensor of 64×64×4" in flat


def test_decoder_code_block_is_the_pipelines_own_source(project):
    text = page(project)
    m = re.search(r"approximate decoder.s code.*?<pre[^>]*>(.*?)</pre>", text, re.S)
    shown = html.unescape(re.sub(r"<[^>]+>", "", m.group(1))).strip()
    source = emit.class_source(project / "pipeline/approx_decoder.py", "ApproxDecoder")
    assert shown == source.strip()
    fit = json.loads((project / "build/approx/decoder.json").read_text())
    assert f"{fit['psnr_heldout_db']} dB" in text and fit["psnr_heldout_db"] > 10


def test_formula_is_mathml(project):
    text = page(project)
    m = re.search(r"<math[^>]*display=\"block\".*?</math>", text, re.S)
    assert m and "softmax" in m.group(0) and "<msqrt>" in m.group(0)


def test_up_to_date_build_runs_no_task_and_says_so_in_one_line(project):
    proc = doit(project)
    assert executed(proc) == []
    lines = proc.stdout.strip().splitlines()
    tasks = len(doit(project, "list", "--all").stdout.split("\n")) - 1  # subtasks included
    assert len(lines) == 1 and lines[0].endswith("tasks are up to date; nothing to do"), lines
    assert int(lines[0].split()[0]) >= tasks - len(doit(project, "list").stdout.splitlines())


def test_missing_image_fails_hugo_naming_it(project):
    from pipeline import hugo

    victim = project / "static/images/miko-715317074-200x200-usual.vae.w175.png"
    saved = victim.read_bytes()
    victim.unlink()
    try:
        proc = subprocess.run([hugo.binary(), "--config", "site/hugo.toml", "--destination",
                               str(project / "build/hugo-check")], cwd=project,
                              capture_output=True, text=True)
        assert proc.returncode == 1
        assert "image static/images/miko-715317074-200x200-usual.vae.w175.png is missing" in (
            proc.stdout + proc.stderr)
        # doit notices the missing target and makes it again, byte for byte, so nothing
        # downstream (not even Hugo) has to rerun
        ran = executed(doit(project))
        assert ran == ["thumb:miko-715317074-200x200-usual.vae.w175.png"]
        assert victim.read_bytes() == saved
    finally:
        if not victim.exists():
            victim.write_bytes(saved)


def test_prose_edit_reruns_only_hugo(project):
    md = project / "content/sd15-image-sizes.md"
    md.write_text(md.read_text() + "\nA sentence added by the test suite.\n")
    assert executed(doit(project)) == ["hugo"]
    assert "A sentence added by the test suite." in page(project)
    # the reporter recorded the wall time of what ran, and only that
    times = json.loads((project / "build/task-times.json").read_text())
    assert list(times) == ["hugo"] and 0 < times["hugo"] < 60, times


def test_changing_one_seed_regenerates_only_what_depends_on_it(project):
    images = project / "static/images"
    before = {p.name: p.read_bytes() for p in images.glob("*.png")}
    spec_file = project / "figures.toml"
    spec_file.write_text(spec_file.read_text().replace("seed = 2106704619", "seed = 2106704620"))
    ran = executed(doit(project))
    new = "miko-2106704620-256x256-usual"
    per_image = [t for t in ran if t.split(":")[0] in ("decode", "thumb", "overlay")]
    assert per_image and all(new in t for t in per_image), ran
    assert sorted(t for t in ran if t not in per_image) == ["emit", "hugo", "measure",
                                                          "sample:256x256"]
    assert f"{new}.vae.png" in {p.name for p in images.glob("*.png")}
    for name, data in before.items():
        if "2106704619" not in name:
            assert (images / name).read_bytes() == data, name
        else:  # no longer shown: removed, so the published site carries no stale images
            assert not (images / name).exists() and not (project / "public/images" / name).exists()
    assert new in page(project)


def test_prune_and_clean_drop_the_latents_of_removed_seeds(tmp_path):
    scratch = copy_project(tmp_path)
    spec = specmod.load(scratch / "figures.toml")
    kept = scratch / "build/latents" / f"{spec.article_generations()[0].id}.safetensors"
    orphan = scratch / "build/latents/miko-12345-512x512-usual.safetensors"
    probe_orphan = scratch / "build/probe/miko-12345-512x512-usual.json"
    for path in (kept, orphan, probe_orphan):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    out = doit(scratch, "prune").stdout
    assert not orphan.exists() and not probe_orphan.exists() and kept.exists()
    assert f"removed build/latents/{orphan.name}" in out
    orphan.write_bytes(b"x")
    doit(scratch, "clean")
    assert not orphan.exists() and not kept.exists()  # everything the tasks made, orphans too


# --- bad input: one clear line, nothing written -------------------------------------------------

@pytest.fixture
def scratch(tmp_path):
    return copy_project(tmp_path)


def _fails_cleanly(scratch, *args, expect):
    proc = doit(scratch, *args, check=False)
    assert proc.returncode != 0
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1, proc.stderr
    assert expect in lines[0]
    assert not (scratch / "build").exists()
    assert [p.name for p in (scratch / "static/images").iterdir()] == [".gitkeep"]
    return lines[0]


def test_bad_size_in_spec(scratch):
    f = scratch / "figures.toml"
    f.write_text(f.read_text().replace("{ seed = 715317074, size = 200 }",
                                       "{ seed = 715317074, size = 196 }"))
    line = _fails_cleanly(scratch, expect="figure 'hero' cell 1: size 196 is not a multiple of 8")
    assert "use 192 or 200" in line


def test_unknown_prompt_key_in_spec(scratch):
    f = scratch / "figures.toml"
    f.write_text(f.read_text().replace('{ prompt = "blonde", seed = 340323845 }',
                                       '{ prompt = "blond", seed = 340323845 }'))
    _fails_cleanly(scratch, expect="figure 'symptoms-768' cell 3: unknown prompt key 'blond'")


def test_duplicate_figure_id_in_spec(scratch):
    f = scratch / "figures.toml"
    f.write_text(f.read_text().replace('id = "baseline-512"', 'id = "hero"'))
    _fails_cleanly(scratch, expect="figures #1 and #3 share the id 'hero'")


def test_missing_model_directory(scratch):
    line = _fails_cleanly(scratch, "model=/data/models/sd15", expect="model directory "
                          "/data/models/sd15 does not exist")
    assert "model=<hub id>" in line


@pytest.mark.parametrize("arg, expect", [
    ("device=tpu", "device=tpu is not a device this pipeline runs on"),
    ("batch=abc", "batch=abc is not a batch size"),
    ("batch=0", "batch=0 is not a batch size"),
])
def test_bad_command_line_variables(scratch, arg, expect):
    _fails_cleanly(scratch, arg, expect=expect)


def test_a_v_prediction_model_is_refused_in_one_line(scratch):
    import shutil

    model_dir = shutil.copytree(scratch / "models/preview", scratch.parent / "vpred")
    config = model_dir / "scheduler/scheduler_config.json"
    config.write_text(config.read_text().replace('"epsilon"', '"v_prediction"'))
    line = _fails_cleanly(scratch, f"model={model_dir}", expect="predicts 'v_prediction'")
    assert "epsilon-prediction models such as SD 1.5 only" in line


def test_an_unreachable_hub_model_fails_its_task_in_one_line(scratch):
    proc = doit(scratch, "model=someone/not-a-model", check=False)  # offline: HF_HUB_OFFLINE=1
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    errors = [l for l in out.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "could not fetch hub model 'someone/not-a-model'" in errors[0]
    assert "model=<dir>" in errors[0]
    assert [p.name for p in (scratch / "static/images").iterdir()] == [".gitkeep"]


def test_device_cuda_without_cuda_fails_in_one_line(scratch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = doit(scratch, "device=cuda", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out, out
    errors = [l for l in out.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "device=cuda was asked for but torch sees no CUDA device" in errors[0]


def test_damaged_shipped_weights_name_the_file_and_doit_train(scratch):
    weights = scratch / "models/preview/vae/diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    line = _fails_cleanly(scratch, expect=f"{weights.relative_to(scratch)} is corrupt")
    assert "doit train" in line


def test_compare_figures_put_each_variant_beside_the_usual_attention(project):
    spec = specmod.load(project / "figures.toml")
    text = page(project)
    compares = [f for f in spec.figures if f.layout == "compare"]
    assert compares and all(f.variants[0] == "usual" for f in compares)
    for fig in compares:
        block = figure_html(text, fig.id)
        heads = re.findall(r'<th scope="col" data-variant="([^"]+)"', block)
        assert heads == list(fig.variants)
        rows = re.findall(r"<tr data-decoder=.*?</tr>", block, re.S)
        assert len(rows) == len(fig.compare_rows())
        for row, gens in zip(rows, fig.compare_rows()):
            assert len({(g.prompt, g.seed) for g in gens}) == 1  # one seed per row
            titles = re.findall(r'title="([^"]+)"', row)
            assert [re.search(r"variant (\S+)", t).group(1) for t in titles] == list(fig.variants)
    # a usual column that another figure also shows is that very generation, sampled once
    shown = {g for f in spec.figures if f.layout != "compare" for g in f.cells}
    shared = [g for f in compares for g in f.cells if g in shown]
    assert shared and all((project / "build/latents" / f"{g.id}.safetensors").exists()
                          for g in shared)


def test_logit_scale_factors_on_the_page_are_the_closed_form(project):
    import math

    table = re.search(r'<table class="factors".*?</table>', page(project), re.S).group(0)
    # the preview UNet has self-attention at levels 1-3: 32², 16², 8² keys at 512²
    for n_train in (1024, 256, 64):
        side = math.isqrt(n_train)
        for size in (256, 768):
            n = (side * size // 512) ** 2
            assert f"{math.sqrt(math.log(n) / math.log(n_train)):.4f}" in table


def probe_results(project, size, variant):
    spec = specmod.load(project / "figures.toml")
    return [json.loads((project / "build/probe" / f"{g.id}.json").read_text())
            for g in spec.probe_generations() if g.width == size and g.variant == variant]


def test_probe_statistics_obey_the_algebra(project):
    usual, denom, mask = (probe_results(project, 768, v)
                          for v in ("usual", "topk-denominator", "topk-mask"))
    assert usual and len(usual) == len(denom) == len(mask)
    for u, d, m in zip(usual, denom, mask):
        assert u["step"] == 5 and u["sigma"] == d["sigma"]
        for lu, ld, lm in zip(u["layers"], d["layers"], m["layers"]):
            assert lu["name"] == ld["name"] == lm["name"] and lu["n"] > lu["n_train"]
            # the top-k denominator's rows sum past one above the trained size (its entropy is
            # the usual one only for identical inputs: tests/test_attention.py checks that)
            assert ld["mass"] > 1.0 + 1e-3 and lu["mass"] == pytest.approx(1.0, abs=1e-4)
            # the mask keeps at most n_train keys per query
            # (a mask that kept more keys would exceed this: the trained model's attention is
            # broad, its usual entropy lies above log n_train at this level)
            assert lm["entropy"] <= math.log(lm["n_train"]) + 1e-4
    for size in (256, 512):  # at or below the trained size the top-k rules are the softmax
        for a, b in zip(probe_results(project, size, "usual"),
                        probe_results(project, size, "topk-mask")):
            assert [x["entropy"] for x in a["layers"]] == pytest.approx(
                [x["entropy"] for x in b["layers"]], abs=1e-4)


def test_prose_quotes_the_measured_entropy(project):
    flat = " ".join(re.sub(r"<[^>]+>", "", page(project)).split())
    m = re.search(r"mean entropy is ([\d.]+) nats at 512×512, ([\d.]+) at 768×768 and ([\d.]+) "
                  r"at 256×256", flat)
    assert m, "the entropy sentence is missing"
    at512, at768, at256 = map(float, m.groups())
    assert at256 < at512 < at768  # more keys, flatter attention
    data = json.loads((project / "build/data/article.json").read_text())
    assert at768 == data["probe"]["summary"]["768"]["usual"]["first"]["entropy"]


def test_a_negative_value_is_printed_with_the_typographic_minus(project):
    flat = " ".join(re.sub(r"<[^>]+>", "", page(project)).split())
    data = json.loads((project / "build/data/article.json").read_text())
    shift = data["probe"]["summary"]["768"]["logit_shift"]
    shown = f"−{-shift:g}" if shift < 0 else f"{shift:g}"  # as Hugo prints a float: 0.0 -> 0
    assert f"logit scaling changes it by {shown} nats" in flat
    assert re.search(r"changes it by -\d", flat) is None  # never the ASCII hyphen


def test_the_miniature_shows_the_failures_on_this_builds_images(project):
    """Issue targets, measured by the detector on the article's own VAE decodes."""
    m = json.loads((project / "build/measure.json").read_text())
    assert m["applies"] and m["detector"] == detector.VERSION
    at512, at768 = m["summary"]["512"]["usual"], m["summary"]["768"]["usual"]
    assert at512["n"] >= 8 and at768["n"] >= 8
    assert at512["exactly_one"] >= 0.8
    assert at768["two_plus"] >= 0.25 and at768["two_plus"] >= 3 * at512["two_plus"]
    for small in ("256", "200"):  # the small sizes drift from the training set's colours
        assert m["summary"][small]["usual"]["colour_error"] > at512["colour_error"]
    # the page quotes the measured shares
    flat = " ".join(re.sub(r"<[^>]+>", "", page(project)).split())
    assert (f"In the {at768['n']} images above at 768×768 it finds two or more characters in "
            f"{round(100 * at768['two_plus'])}%") in flat


def test_plots_are_images_with_provenance(project):
    from PIL import Image

    spec = specmod.load(project / "figures.toml")
    for fig in spec.plots():
        with Image.open(project / "static/images" / specmod.Plot(fig.id).file) as im:
            prov = json.loads(im.info["provenance"])
            assert im.width >= 1000 and im.height >= 500
        assert prov["plot"] == fig.plot
        if fig.plot in specmod.VAE_PLOTS:
            config = json.loads((project / "models/preview/vae/config.json").read_text())
            assert prov["vae"]["scaling_factor"] == config["scaling_factor"]
            assert len(prov["inputs"]) == 8
            assert prov["seed"] == 715317074 and prov["width"] == 512
        else:
            assert prov["probe"]["step"] == 5
            assert len(prov["inputs"]) == (len(fig.sizes) * len(fig.variants)
                                           * len(spec.probe["seeds"]))


def test_the_preview_server_never_touches_what_doit_publishes(project):
    import os
    import socket
    import sys
    import time
    import urllib.request

    before = {p: p.read_bytes() for p in (project / "public").rglob("*") if p.is_file()}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(project)}
    server = subprocess.Popen([sys.executable, "-c", f"import pipeline.hugo as h; h.serve({port})"],
                              cwd=project, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                served = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("hugo server did not answer")
        assert b"livereload" in served  # it is the development server
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert executed(doit(project)) == []  # nothing published changed, nothing to rebuild
    after = {p: p.read_bytes() for p in (project / "public").rglob("*") if p.is_file()}
    assert after == before
    assert not any(b"livereload" in data for data in after.values())


def test_doit_rebuilds_a_published_site_changed_behind_its_back(project):
    index = project / "public/index.html"
    clean = index.read_bytes()
    index.write_bytes(clean.replace(b"</body>", b'<script src="/livereload.js"></script></body>'))
    assert executed(doit(project)) == ["hugo"]
    assert index.read_bytes() == clean


# Bare numbers the prose may hold although the emitted data holds them too, each with its reason.
PROSE_NUMBERS = {
    ("0", "0–1 scale"): "the scale pixel values are measured on",
    ("1", "0–1 scale"): "the scale pixel values are measured on",
    ("1", "1/√"): "the usual attention scale, 1/√d, in a formula",
    ("0.18215", "SD 1.5's 0.18215"): "SD 1.5's published VAE scaling factor, cited",
    ("0.13025", "0.13025 against"): "SDXL's published VAE scaling factor, cited",
    ("30", "30 of 50 steps"): "ScaleCrafter's published step window for SD 1.5, cited",
    ("50", "30 of 50 steps"): "ScaleCrafter's published step count for SD 1.5, cited",
}


def _prose(markdown: str) -> str:
    """The article's prose as a reader types it: front matter, shortcodes (whose numbers come
    from the pipeline), code, link targets and named model versions removed."""
    text = re.sub(r"\A---\n.*?\n---\n", "", markdown, flags=re.S)
    text = re.sub(r"\{\{[<%].*?[>%]\}\}", " ", text, flags=re.S)
    text = re.sub(r"```.*?```|`[^`]*`|<!--.*?-->", " ", text, flags=re.S)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    return re.sub(r"\b(?:SD|SDXL|Stable Diffusion) ?\d+(?:\.(?:\d+|x))?", "MODEL", text)


def _numbers(obj, skip=("prompts", "source")) -> set[float]:
    if isinstance(obj, dict):
        return set().union(*(_numbers(v) for k, v in obj.items() if k not in skip), set())
    if isinstance(obj, list):
        return set().union(*map(_numbers, obj), set())
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return {float(obj)}
    if isinstance(obj, str):
        return {float(m) for m in re.findall(r"-?\d+(?:\.\d+)?", obj)}
    return set()


def _typed_numbers(prose: str, known: set[float], sizes: set[int], sections: set[int]) -> list:
    """Numbers in `prose` the emitted data holds (not allow-listed); sizes and section numbers
    must be ones the spec has."""
    bare = []
    for m in re.finditer(r"(?<![\w.])(?:section )?[−-]?\d+(?:\.\d+)?(?:×\d+)?(?![\w])", prose):
        token = m.group(0)
        context = prose[max(0, m.start() - 20):m.end() + 20]
        if token.startswith("section "):
            assert 1 <= int(token.split()[1]) <= max(sections), context
            continue
        if "×" in token:  # an image size the article discusses: it must be one the spec makes
            w, h = map(int, token.split("×"))
            assert w in sizes and h in sizes, f"{token} is not a size figures.toml makes"
            continue
        value = float(token.replace("−", "-"))
        if value in known and not any(n == token and c in context for n, c in PROSE_NUMBERS):
            bare.append(f"{token!r} in …{' '.join(context.split())}…")
    return bare


def _article_numbers(project):
    data = json.loads((project / "build/data/article.json").read_text())
    spec = specmod.load(project / "figures.toml")
    sizes = {w for g in spec.all_generations() + spec.probe_generations()
             for w in (g.width, g.height)}
    return data, _numbers(data), sizes, {f.section for f in spec.figures}


def test_no_number_the_pipeline_knows_is_typed_into_the_prose(project):
    _, known, sizes, sections = _article_numbers(project)
    prose = _prose((project / "content/sd15-image-sizes.md").read_text())
    bare = _typed_numbers(prose, known, sizes, sections)
    assert not bare, "numbers the pipeline emits, typed by hand (use {{< value >}}): " + "; ".join(bare)


def test_the_prompt_token_count_on_the_page_is_the_models(project):
    """Cross-attention's key count is read from the text encoder that built the page, which pads
    every prompt to its tokenizer's length."""
    data = json.loads((project / "build/data/article.json").read_text())
    model_dir = project / model.PREVIEW_DIR
    config = json.loads((model_dir / "text_encoder/config.json").read_text())
    tokenizer = json.loads((model_dir / "tokenizer/tokenizer_config.json").read_text())
    n = data["model"]["prompt_tokens"]
    assert n == config["max_position_embeddings"] == tokenizer["model_max_length"]
    assert f"token count, {n}, whatever the image size" in " ".join(html.unescape(page(project)).split())


def test_the_bare_number_check_catches_a_typed_number(project):
    data, known, sizes, sections = _article_numbers(project)
    floor = data["vae_anomaly"]["floor"]
    typed = f"diffusers clamps it to the range {{{{< value \"vae_anomaly.floor\" >}}}} to 20."
    assert _typed_numbers(_prose(typed), known, sizes, sections) != []  # the ceiling, typed
    typed = typed.replace("20.", '{{< value "vae_anomaly.ceiling" >}}.')
    assert _typed_numbers(_prose(typed), known, sizes, sections) == []
    assert _typed_numbers(f"a floor of {floor}", known, sizes, sections) != []
    with pytest.raises(AssertionError, match="640×640 is not a size"):
        _typed_numbers("at 640×640", known, sizes - {640}, sections)


def test_the_evaluation_is_on_the_page_with_counts_matching_its_data(project):
    result = json.loads((project / "build/eval/evaluation.json").read_text())
    data = json.loads((project / "build/data/article.json").read_text())["evaluation"]
    spec = specmod.load(project / "figures.toml")
    # the committed frozen evaluation (tests/test_freeze.py holds it current) is what it shows
    # wherever its key matches; on a CPU without bf16 instructions the default leaves bf16
    # autocast out and reuses records sampled with it, and the page says they were
    frozen = json.loads((project / "frozen/evaluation.json").read_text())
    loaded, why = freeze.load(spec, "cpu", speedups.parse("default", "cpu"),
                         project / model.PREVIEW_DIR, geometry.load(project / model.PREVIEW_DIR),
                         path=project / freeze.FROZEN)
    assert result["applies"] and result["detector"] and result["model_sha256"]
    text = page(project)
    block = re.search(r'<figure class="fig fig-evaluation" id="evaluation".*?</figure>', text,
                      re.S).group(0)
    if why == "":
        assert result["seeds"] == frozen["seeds"] >= spec.evaluation["seeds"]
        assert result["source"]["mode"] == "frozen" and result["source"]["key"] == frozen["key"]
        assert result["generations"] == {k: frozen["records"][k] for k in result["generations"]}
        assert (f"computed by <code>doit eval_seeds={frozen['seeds']}</code> on "
                f"{frozen['date']} on {frozen['machine']}," in " ".join(block.split()))
        bf16_elsewhere = ("bf16_autocast" in frozen["key_inputs"]["speedups"]
                          and not machine.bf16_flags())
        assert loaded["bf16_made"] == bf16_elsewhere == result["source"]["bf16_elsewhere"]
        assert ('<span id="evaluation-bf16">Those generations were sampled with the UNet in '
                'bfloat16; this machine has no bf16 instructions' in block) == bf16_elsewhere
    else:
        assert result["source"]["mode"] == "computed"
        assert result["seeds"] == spec.evaluation["default_seeds"]
        assert "computed by this build (the frozen evaluation" in " ".join(block.split())
    assert f'href="/images/{data["plot"]["full"]}"' in block
    assert (project / "public/images" / data["plot"]["full"]).exists()
    # the detector's agreement with the hand labels, over the labelled generations shown
    labels = json.loads((project / freeze.LABELS).read_text())
    agree = evaluate.agreement(labels, result["generations"],
                               freeze.model_identity(project / model.PREVIEW_DIR))
    said = " ".join(re.search(r'<span id="detector-agreement">(.*?)</span>\s*</figcaption>', block,
                              re.S).group(1).split())
    if frozen["key"] == result["source"].get("key"):
        assert agree["applies"] and agree["n"] == len(labels["labels"])
    if agree["applies"]:
        assert f'<span class="agree">{agree["agree"]} of the {agree["n"]}</span>' in said
        assert ", ".join(f'{s["size"]}×{s["size"]}: {s["agree"]}/{s["n"]}'
                         for s in agree["sizes"]) in said
        misses = [m for s in agree["sizes"] for m in s["misses"]]
        assert sum(m["n"] for m in misses) == agree["n"] - agree["agree"]
        assert ("Where they disagree" in said) == bool(misses)
        for m in misses:  # which way the detector errs, each (label, class) pair with its count
            assert (f'data-label="{m["label"]}" data-detector="{m["detector"]}">'
                    f'{m["label"]} → {m["detector"]} {m["n"]}</span>') in said
        held = agree["held_out"]  # the labels given before this detector version saw them
        assert ('id="detector-held-out"' in said) == bool(held)
        if held:
            assert (f'<span class="held-n">{held["n"]}</span> labelled before' in said
                    and f'<span class="held-agree">{held["agree"]}</span>' in said)
            assert ", ".join(f'{s["size"]}×{s["size"]}: {s["agree"]}/{s["n"]}'
                             for s in held["sizes"]) + ").</span>" in said
        second = agree["second_look"]  # a closer look at the decodes the sheets shrank most
        assert ('id="detector-second-look"' in said) == bool(second)
        if second:
            assert (f'<span class="looked">{second["looked_at"]}</span> decodes that' in said
                    and f'changed <span class="changed">{second["changed"]}</span> of' in said)
    else:
        assert "not measured here" in said
    cells = re.findall(r'<td data-variant="([^"]+)" data-counts="([^"]*)">', block)
    assert len(cells) == len(spec.evaluation["sizes"]) * len(spec.evaluation["variants"])
    blocks = re.findall(r'<figure class="fig fig-evaluation".*?</figure>', text, re.S)
    assert len(blocks) >= 3  # section 6's, the convolution side's and the sweeps'
    sweeps = re.search(r'<figure class="fig fig-evaluation" id="evaluation-sweeps".*?</figure>',
                       text, re.S).group(0)
    assert f'href="/images/{data["sweeps_plot"]["full"]}"' in sweeps
    by_cell = {(c["width"], c["variant"]): c for c in result["cells"]}
    shown = {(int(size), v) for b in blocks
             for size, row in re.findall(r'<tr data-size="(\d+)">(.*?)</tr>', b, re.S)
             for v in re.findall(r'<td data-variant="([^"]+)" data-counts=', row)}
    assert shown == set(by_cell)  # every measured cell is in some table, and nothing else
    rows = [r for b in blocks for r in re.findall(r'<tr data-size="(\d+)">(.*?)</tr>', b, re.S)]
    for size, row in rows:
        for variant, counts in re.findall(r'<td data-variant="([^"]+)" data-counts="([^"]*)">', row):
            cell = by_cell[(int(size), variant)]
            assert [int(c) for c in counts.split()] == cell["counts"]
            sheet = project / "public/images" / cell["sheet"]
            assert sheet.exists() and f'src="/images/{cell["sheet"]}"' in row
            from PIL import Image
            with Image.open(sheet) as im:  # the sheet records the counts printed on it
                assert json.loads(im.info["provenance"])["counts"] == cell["counts"]
            assert f"two or more {round(100 * cell['two_plus'])}%" in row
    manifest = json.loads((project / "static/images/manifest.json").read_text())["images"]
    assert all(c["sheet"] in manifest for c in result["cells"])
    assert f"{result['seeds']} per cell" in block


def test_the_page_has_no_empty_table_header_and_everything_in_a_landmark(project):
    from html.parser import HTMLParser

    text = page(project)

    class Check(HTMLParser):
        def __init__(self):
            super().__init__()
            self.stack, self.th, self.empty, self.outside = [], None, 0, []

        def handle_starttag(self, tag, attrs):
            if tag == "th":
                self.th = ""
            if self.stack == ["html", "body"] and tag not in ("header", "main", "footer", "aside",
                                                              "nav", "script"):
                self.outside.append(tag)
            if tag not in ("meta", "link", "img", "br", "input", "hr", "source"):
                self.stack.append(tag)

        def handle_endtag(self, tag):
            if tag == "th":
                self.empty += not self.th.strip()
                self.th = None
            if self.stack and self.stack[-1] == tag:
                self.stack.pop()

        def handle_data(self, data):
            if self.th is not None:
                self.th += data

    check = Check()
    check.feed(text)
    assert check.empty == 0 and check.outside == [], (check.empty, check.outside)


def test_cross_references_are_links_that_land_on_a_heading(project):
    """The headings carry no numbers, so the prose refers to sections by link, and every link
    within the page lands on an element that exists."""
    text = page(project)
    body = re.sub(r"<(script|style)\b.*?</\1>", "", text, flags=re.S)
    prose = re.sub(r"<[^>]+>", " ", body)
    assert not re.search(r"\bsections? \d", prose), re.search(r".{40}\bsections? \d.{40}", prose)
    ids = set(re.findall(r'\bid="([^"]+)"', text))
    targets = set(re.findall(r'href="#([^"]+)"', text))
    assert {"is-it-self-attention", "is-it-the-convolutions"} <= targets
    assert targets <= ids, targets - ids


def test_the_page_shows_every_prompt_in_full(project):
    import html

    spec = specmod.load(project / "figures.toml")
    block = re.search(r'<details class="prompts".*?</details>', page(project), re.S).group(0)
    text = " ".join(html.unescape(block).split())
    for key, prompt in spec.prompts.items():
        assert f"<code>{key}</code>" in text and " ".join(prompt.split()) in text, key


WHEN = re.compile(r"\{\{% (/?)when(.*?)%\}\}", re.S)


def _when_blocks(markdown: str) -> list[tuple[list[dict], str]]:
    """Every {{% when %}} block of the article: the conditions it is nested in (its own last)
    and its own text (nested blocks and other shortcodes removed)."""
    blocks, stack, pos = [], [], 0
    for m in WHEN.finditer(markdown):
        if stack:
            stack[-1]["text"] += markdown[pos:m.start()]
        if m.group(1):
            done = stack.pop()
            blocks.append(([*(b["cond"] for b in stack), done["cond"]], done["text"]))
        else:
            cond = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            stack.append({"cond": cond, "text": ""})
        pos = m.end()
    assert not stack, "an unclosed {{% when %}}"
    return blocks


def _holds(cond: dict, data: dict) -> bool:
    if "value" in cond:
        v = data
        for part in cond["value"].split("."):
            v = v[part]
    else:
        e = data["evaluation"]
        if not e["applies"]:
            return False
        v = e["by"][cond["size"]][cond["variant"]][cond["field"]]
    v = str(v)
    return v in cond["is"].split("|") if "is" in cond else v not in cond["not"].split("|")


def test_the_page_holds_exactly_the_verdicts_its_data_chooses(project):
    """Each data-chosen sentence ({{% when %}}) is on the built page if and only if the build's
    own numbers choose it: no verdict its data contradicts, none that it supports left out."""
    data = json.loads((project / "build/data/article.json").read_text())
    quotes = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"'})
    def tidy(t: str) -> str:  # one space between words, none before punctuation
        t = re.sub(r" ([;:,.)])", r"\1", " ".join(t.split()))
        return t.replace("( ", "(").translate(quotes)

    text = tidy(html.unescape(re.sub(r"<[^>]+>", " ", page(project))))
    blocks = _when_blocks((project / "content/sd15-image-sizes.md").read_text())
    assert len(blocks) >= 20
    shown = 0
    for conds, own in blocks:
        plain = re.sub(r"[*`]|\]\([^)]*\)|\[", "", own)
        runs = [r.split() for r in re.split(r"\{\{[<%].*?[>%]\}\}", plain, flags=re.S)]
        words = max(runs, key=len)  # the longest stretch with no number filled in
        if not any(runs):
            continue  # only holds other blocks, which carry its condition
        assert len(words) >= 5, f"a verdict too short to find on the page: {own!r}"
        snippet = tidy(" ".join(words))
        expected = all(_holds(c, data) for c in conds)
        shown += expected
        assert (snippet in text) == expected, (snippet, conds)
    assert shown, "no data-chosen sentence is on the page"
