"""GPU throughput of the papers' extractions and of SynOOD's guided generation, then the paper profile's GPU time.

Run once on the CUDA box the reproduction will use (about 5 minutes on one GPU; nothing is downloaded):
    .venv/bin/python bench/gpu.py --json runs/bench/gpu.json
Without CUDA it runs the smoke profile's tiny models at their tiny sizes, as a test of itself (under a minute on
two cores): the same code, the same table, but its figures are CPU rates of tiny models, not GPU rates.

Extractions: every (model, extraction mode) of the paper profile of both papers (`ood_repro.costs.profile_work`:
RAM Swin-L 384 with its attention, base and top-tag logit; the Swin-L classifier's base, ODIN, block norms and
jigsaw; CLIP ViT-B/16, ViT-L/14 and the other backbones of SynOOD's Table 3; ResNet-50), each at its real
architecture with random weights (as the `slow` checks of nbs/04_backbones and nbs/13_ram build them), called as
`ood_repro.cache.extract` calls it: under `torch.inference_mode()` and float16 autocast (the profile's `amp`), on
batches of the profile's `batch_size` (ODIN: `gradient_batch_size`) of random images at the model's input size.
Images/s is the batch times the timed iterations over their wall time, after warm-up iterations, with
`torch.cuda.synchronize()` around the timed region; data loading is not included (ood_repro.costs bounds it by its
decoding rate separately).

Generation: SD2 inpainting at 512 x 512 (the UNet, VAE and OpenCLIP ViT-H text encoder of
stabilityai/stable-diffusion-2-inpainting's configurations, random weights) in float16, guided by a float32 ResNet-50
through `ood_repro.synood.guidance.GuidedInpainter` with the paper profile's settings (skip gradient, 20 steps at
strength 0.6, 3 passes), on batches of the profile's `synthetic_sets.batch_size`. Measured: seconds per image of a
whole `generate`, and its parts, which replace the assumptions of `ood_repro.costs.generation_cost`:
- `unet_step_seconds`: `denoise` (no graph) over the batch, per image and UNet evaluation (classifier-free guidance
  included, as in the assumption);
- `vae_decode_seconds`: the VAE decoder, per image;
- `guidance_backward_seconds`: one skip-gradient pass minus one pass without a gradient, per image.
The whole `generate` is compared with what those parts predict for it.

Then the estimated GPU hours of the whole paper profile of both papers by stage (`ood_repro.costs.estimate`), with
the assumed figures and with the measured ones in their place (`estimate(..., measured=...)`), and every figure
still assumed. Peak GPU memory (`torch.cuda.max_memory_allocated`) is reported per measurement. The measurements go
to `--json` (load them back with `--from-json` to print the table again); record them in bench/README.md.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch
from diffusers import StableDiffusionInpaintPipeline

# Benchmark the checkout this script lives in, not whichever ood_repro happens to be installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ood_repro.backbones import (OdinExtractor, JigsawExtractor, OpenClipExtractor, TimmClassifier,  # noqa: E402
                                 build_network, get_extractor)
from ood_repro.config import profile_settings  # noqa: E402
from ood_repro.costs import (ASSUMPTIONS, EXPERIMENT_WORK, Assumption, Extraction, by_stage, estimate,  # noqa: E402
                             experiment_parameters, extraction_rate_name, profile_work)
from ood_repro.data import make_transform  # noqa: E402
from ood_repro.pipeline import ram_class_tags, ram_extractor_options  # noqa: E402
from ood_repro.ram import REAL_CONFIG, RAM, RAMExtractor, get_ram_extractor, imagenet_class_tags  # noqa: E402
from ood_repro.registry import BACKBONE_LIBRARIES, get_model  # noqa: E402
from ood_repro.synood.generate import real_size_pipeline, tiny_inpaint_pipeline  # noqa: E402
from ood_repro.synood.guidance import GuidedInpainter, guidance_settings  # noqa: E402

PROMPT = "A photo only remain grass, sky, tree."  # a context prompt of the release's form (context_prompt)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function, device: torch.device, warmup: int, iterations: int) -> tuple:
    "(seconds per call over `iterations` calls after `warmup` untimed ones, peak GPU bytes of them or None on a CPU)."
    for _ in range(warmup):
        function()
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(iterations):
        function()
    synchronize(device)
    seconds = (time.perf_counter() - start) / iterations
    return seconds, torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def paper_extractions() -> list:
    "The distinct (model, mode) of every extraction of the paper profile of both papers, in the order they come."
    items = profile_work({name: experiment_parameters(name) for name in EXPERIMENT_WORK})
    return list(dict.fromkeys((item.model, item.mode) for item in items if isinstance(item, Extraction)))


def base_extractor(model: str, profile: str, block_norms: bool = False):
    "The extractor `model` of `profile` as the runner builds it, at its real architecture with random weights for `paper`."
    spec = get_model(model, (*BACKBONE_LIBRARIES, "ram"))
    if spec.library == "ram":
        # the paper's class -> tag map itself: ram_class_tags would first check it against an ImageNet folder
        label_tags = imagenet_class_tags() if profile == "paper" else ram_class_tags("imagenet-val", profile)
        options = dict(ram_extractor_options(profile), tags=sorted(set(label_tags)), label_tags=label_tags)
        if profile != "paper":
            return get_ram_extractor(model, profile, **options)
        return RAMExtractor(RAM(REAL_CONFIG, spec.architecture, seed=0), make_transform(spec.preprocessing), model,
                            f"ram:{spec.architecture}:swin_large_patch4_window12_384", "random-init-seed0", **options)
    if profile != "paper":
        return get_extractor(model, profile, block_norms=block_norms)
    network = build_network(spec, tiny=False, num_classes=None, seed=0)
    transform = make_transform(spec.preprocessing)
    if spec.library == "timm":
        return TimmClassifier(network, transform, model, spec.real_id, "random-init-seed0", block_norms=block_norms)
    return OpenClipExtractor(network, transform, model, spec.real_id, "random-init-seed0")


def mode_extractor(model: str, mode: str, profile: str):
    "The extractor of `model`'s extraction `mode`, wrapped as ood_repro.pipeline.Evaluator wraps it."
    if mode == "base":
        return base_extractor(model, profile)
    if mode == "odin":
        return OdinExtractor(base_extractor(model, profile))
    if mode == "block_norms":
        return base_extractor(model, profile, block_norms=True)
    if mode == "jigsaw":
        return JigsawExtractor(base_extractor(model, profile, block_norms=True))
    if mode == "top_tag_logit":
        return base_extractor(model, profile).with_top_tag_logit()
    raise ValueError(f"No extraction mode {mode!r} here; the paper profile's are base, odin, block_norms, jigsaw, "
                     f"top_tag_logit.")


def measure_extraction(model: str, mode: str, profile: str, device: torch.device, warmup: int, iterations: int,
                       batch_size: int | None = None) -> dict:
    "Images/s and peak GPU memory of one extraction, called as ood_repro.cache.extract calls it (`batch_size`: the profile's)."
    run = profile_settings(profile, "run")
    if batch_size is None:
        batch_size = min(run["batch_size"], run["gradient_batch_size"]) if mode == "odin" else run["batch_size"]
    autocast = bool(run["amp"]) and device.type == "cuda"
    extractor = mode_extractor(model, mode, profile).to(device)
    size = extractor.transform.image_size
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, size, size, generator=generator).to(device)
    labels = torch.zeros(batch_size, dtype=torch.long, device=device)
    reads_labels = bool(getattr(extractor, "reads_labels", False))

    def batch():
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16, enabled=autocast):
            return extractor(images, labels=labels) if reads_labels else extractor(images)

    seconds, peak = timed(batch, device, warmup, iterations)
    del extractor
    return {"images_per_second": batch_size / seconds, "batch_size": batch_size, "image_size": size,
            "precision": "float16-autocast" if autocast else "float32", "peak_gpu_bytes": peak}


def sd2_inpaint_pipeline(profile: str) -> StableDiffusionInpaintPipeline:
    "SD2 inpainting at its real size with random weights (`paper`), or the smoke profile's tiny one; float32, on the CPU."
    return real_size_pipeline("sd2-inpainting", seed=0) if profile == "paper" else tiny_inpaint_pipeline(seed=0)


def measure_generation(profile: str, device: torch.device, warmup: int, iterations: int,
                       batch_size: int | None = None) -> dict:
    "Seconds per image of guided generation and of its parts (see the module's docstring), with their peak GPU memory."
    dtype = torch.float16 if device.type == "cuda" else torch.float32  # ood_repro.synood.generate.model_dtype
    pipeline = sd2_inpaint_pipeline(profile).to(device)
    pipeline = pipeline if dtype == torch.float32 else pipeline.to(dtype=dtype)
    classifier = base_extractor("resnet50", profile).to(device)  # float32, as make_inpainter builds it
    inpainter = GuidedInpainter(pipeline, classifier, guidance_settings(profile))
    settings = inpainter.settings
    batch_size = batch_size or profile_settings(profile, "synthetic_sets")["batch_size"]
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch_size, 3, settings.image_size, settings.image_size, generator=generator)
    prompts, seeds = [PROMPT] * batch_size, list(range(batch_size))
    z_in, noise = inpainter.prepare(images, seeds)
    timestep = inpainter.first_timestep().repeat(batch_size)
    noisy = pipeline.scheduler.add_noise(z_in, noise, timestep)
    with torch.no_grad():
        latents = inpainter.denoise(noisy, images, prompts, seeds)
    decoder_input = latents / pipeline.vae.config.scaling_factor
    evaluations = min(int(settings.num_inference_steps * settings.strength), settings.num_inference_steps)

    def denoise():
        with torch.no_grad():
            inpainter.denoise(noisy, images, prompts, seeds)

    def decode():
        with torch.no_grad():
            pipeline.vae.decode(decoder_input.to(pipeline.vae.dtype))

    # the parts without a gradient first: should random float16 weights overflow the guidance gradient
    # (FloatingPointError), the UNet and decoder figures are still taken
    parts = {"denoise": denoise, "decode": decode,
             "pass without gradient": lambda: inpainter.guidance_step(z_in, noise, images, prompts, seeds, "none"),
             "pass with skip gradient": lambda: inpainter.guidance_step(z_in, noise, images, prompts, seeds, "skip"),
             "generate": lambda: inpainter.generate(images, prompts, seeds)}
    measured, failures = {}, {}
    for name, function in parts.items():
        try:
            seconds, peak = timed(function, device, warmup, iterations)
        except Exception as error:  # noqa: BLE001 - reported by main and counted in its exit status
            failures[name] = repr(error)
            continue
        measured[name] = {"seconds_per_image": seconds / batch_size, "peak_gpu_bytes": peak}
    per_image = {name: part["seconds_per_image"] for name, part in measured.items()}
    figures = {}
    if "denoise" in per_image:
        figures["unet_step_seconds"] = per_image["denoise"] / evaluations
    if "decode" in per_image:
        figures["vae_decode_seconds"] = per_image["decode"]
    if {"pass with skip gradient", "pass without gradient"} <= per_image.keys():
        figures["guidance_backward_seconds"] = per_image["pass with skip gradient"] - per_image["pass without gradient"]
    predicted = None
    if len(figures) == 3:
        predicted = (settings.iterations * (evaluations * figures["unet_step_seconds"] + figures["vae_decode_seconds"])
                     + (settings.iterations - 1) * figures["guidance_backward_seconds"])
    return {"parts": measured, "failures": failures, "figures": figures, "predicted_generate_seconds_per_image": predicted,
            "batch_size": batch_size, "image_size": settings.image_size, "unet_evaluations": evaluations,
            "iterations": settings.iterations, "dtype": str(dtype).removeprefix("torch.")}


def format_gib(size) -> str:
    return "-" if size is None else f"{size / 2**30:.2f} GiB"


def measured_assumptions(results: dict, where: str) -> dict:
    "{name: Assumption} of `results` (this script's JSON), for ood_repro.costs.estimate(..., measured=...)."
    measured = {}
    for key, result in results["extractions"].items():
        model, mode = key.split("/")
        # the paper profile's precision: its extractions run under float16 autocast
        measured[extraction_rate_name(model, mode, "float16")] = Assumption(
            result["images_per_second"], "images/s", f"bench/gpu.py on {where}: batch {result['batch_size']}, "
            f"{result['image_size']} px, {result['precision']}")
    generation = results.get("generation")
    if generation:
        for name, value in generation["figures"].items():
            if value > 0:
                measured[name] = Assumption(value, ASSUMPTIONS[name].unit, f"bench/gpu.py on {where}: batch "
                                            f"{generation['batch_size']}, {generation['image_size']} px, {generation['dtype']}")
    return measured


def print_estimate(results: dict) -> None:
    "The paper profile of both papers by stage, GPU hours with the assumed figures and with the measured ones."
    where = results["device"]
    measured = measured_assumptions(results, where)
    items = profile_work({name: experiment_parameters(name) for name in EXPERIMENT_WORK})
    assumed_stages, measured_stages = by_stage(estimate(items)), by_stage(estimate(items, measured=measured))
    if not results["cuda"]:
        print(f"\n*** CPU run: the figures below are CPU rates ({results['profile']} profile's models), NOT GPU rates. "
              "The table only tests this script; run it on the CUDA box for the real estimate. ***")
    print(f"\nThe paper profile of both papers ({len(EXPERIMENT_WORK)} experiments, shared work counted once), GPU hours "
          f"by stage, with the assumed figures and with those measured on {where}:")
    width = max(len(name) for name in assumed_stages.index)
    print(f"  {'stage':<{width}}  {'items':>5}  {'assumed h':>10}  {'measured h':>10}  {'ratio':>6}")
    for name, row in measured_stages.iterrows():
        before = assumed_stages.loc[name, "gpu_hours"]
        ratio = f"{row['gpu_hours'] / before:6.2f}" if before > 0 else f"{'-':>6}"
        print(f"  {name:<{width}}  {int(row['items']):>5}  {before:>10.2f}  {row['gpu_hours']:>10.2f}  {ratio}")
    print("\nMeasured figures (they replace ood_repro.costs' assumptions in the 'measured' column):")
    for name, record in measured.items():
        print(f"  {name} = {record.value:.4g} {record.unit}: {record.source}")
    still = [name for name in ("context_tags_seconds", "training_flops_per_second/float32",
                               "training_flops_per_second/bfloat16", "finetune_samples_per_second",
                               "decode_images_per_second_per_worker") if name not in measured]
    print("Still assumed (ood_repro.costs.ASSUMPTIONS): " + ", ".join(still) + "; extraction rates are bounded by the "
          "loader's decoding rate (decode_images_per_second_per_worker x num_workers).")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", default="runs/bench/gpu.json", help="where to write the measurements")
    parser.add_argument("--from-json", help="print the estimate from measurements written before; measure nothing")
    parser.add_argument("--warmup", type=int, default=None, help="untimed iterations first (default: 3 CUDA, 1 CPU)")
    parser.add_argument("--iterations", type=int, default=None, help="timed iterations (default: 10 CUDA, 2 CPU)")
    parser.add_argument("--profile", choices=("paper", "smoke"),
                        help="the models and sizes (default: paper with CUDA, smoke without); `--profile paper` on a "
                             "CPU with a small --batch-size rehearses the GPU run's code")
    parser.add_argument("--batch-size", type=int, help="every batch of this size instead of the profile's")
    parser.add_argument("--only", nargs="+", help="measure only these extractions, as model/mode (e.g. ram/base)")
    parser.add_argument("--generation-iterations", type=int, default=None,
                        help="timed iterations of each generation part, after one warm-up (default: 2 CUDA, 1 CPU)")
    parser.add_argument("--skip-generation", action="store_true", help="do not measure SD2 generation")
    args = parser.parse_args(argv)
    if args.from_json:
        print_estimate(json.loads(Path(args.from_json).read_text()))
        return 0
    started = time.perf_counter()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    profile = args.profile or ("paper" if cuda else "smoke")
    warmup = args.warmup if args.warmup is not None else (3 if cuda else 1)
    iterations = args.iterations if args.iterations is not None else (10 if cuda else 2)
    generation_iterations = args.generation_iterations if args.generation_iterations is not None else (2 if cuda else 1)
    if warmup < 0 or iterations < 1 or generation_iterations < 1 or (args.batch_size is not None and args.batch_size < 1):
        raise SystemExit(f"--warmup must be >= 0, --iterations, --generation-iterations and --batch-size >= 1; got "
                         f"{warmup}, {iterations}, {generation_iterations} and {args.batch_size}.")
    name = torch.cuda.get_device_name(device) if cuda else "CPU"
    print(f"{name}, torch {torch.__version__}: profile {profile!r} "
          f"({'real architectures, random weights' if profile == 'paper' else 'tiny models'}"
          f"{'' if cuda else '; on a CPU: a test of this script, not GPU rates'}), {warmup} warm-up + {iterations} "
          f"timed iterations", flush=True)
    extractions = paper_extractions()
    if args.only:
        unknown = sorted(set(args.only) - {f"{model}/{mode}" for model, mode in extractions})
        if unknown:
            raise SystemExit(f"--only {unknown}: not extractions of the paper profile; they are "
                             f"{', '.join(f'{model}/{mode}' for model, mode in extractions)}.")
        extractions = [(model, mode) for model, mode in extractions if f"{model}/{mode}" in args.only]
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    results = {"device": name, "cuda": cuda, "torch": torch.__version__, "profile": profile, "warmup": warmup,
               "iterations": iterations, "generation_iterations": generation_iterations, "batch_size": args.batch_size,
               "extractions": {}, "generation": None, "failures": {}}
    # each measurement is kept as it comes (and a failing one reported), so that a single run on a short-lived GPU
    # box leaves every figure it could take
    for model, mode in extractions:
        try:
            result = measure_extraction(model, mode, profile, device, warmup, iterations, args.batch_size)
        except Exception as error:  # noqa: BLE001 - reported and counted in the exit status
            results["failures"][f"{model}/{mode}"] = repr(error)
            print(f"  {model}/{mode}: FAILED {error!r}", flush=True)
            continue
        results["extractions"][f"{model}/{mode}"] = result
        print(f"  {model + '/' + mode:<26} {result['images_per_second']:9.4g} images/s  batch {result['batch_size']:>3}  "
              f"{result['image_size']} px  {result['precision']:<16}  peak {format_gib(result['peak_gpu_bytes'])}",
              flush=True)
        out.write_text(json.dumps(results, indent=1))
        if cuda:
            torch.cuda.empty_cache()
    if not args.skip_generation:
        try:
            generation = measure_generation(profile, device, min(warmup, 1), generation_iterations, args.batch_size)
        except Exception as error:  # noqa: BLE001 - reported and counted in the exit status
            results["failures"]["generation"] = repr(error)
            print(f"  generation: FAILED {error!r}", flush=True)
        else:
            results["generation"] = generation
            print(f"  SD2 inpainting, skip gradient, {generation['image_size']} px, {generation['dtype']}, batch "
                  f"{generation['batch_size']}, {generation['iterations']} passes x {generation['unet_evaluations']} "
                  f"UNet evaluations:")
            for part, figures in generation["parts"].items():
                print(f"    {part:<24} {figures['seconds_per_image']:8.3f} s/image  "
                      f"peak {format_gib(figures['peak_gpu_bytes'])}")
            for part, error in generation["failures"].items():
                results["failures"][f"generation/{part}"] = error
                print(f"    {part:<24} FAILED {error}")
            if generation["predicted_generate_seconds_per_image"] is not None and "generate" in generation["parts"]:
                print(f"    generate predicted from its parts: {generation['predicted_generate_seconds_per_image']:.3f} "
                      f"s/image (measured {generation['parts']['generate']['seconds_per_image']:.3f})")
    results["wall_seconds"] = time.perf_counter() - started
    out.write_text(json.dumps(results, indent=1))
    print_estimate(results)
    print(f"\nMeasurements written to {out}; {results['wall_seconds']:.0f} s of measuring.")
    if results["failures"]:
        print(f"{len(results['failures'])} measurements failed: {', '.join(results['failures'])}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
