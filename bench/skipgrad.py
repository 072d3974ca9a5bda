"""Skip gradient vs full backpropagation: time and peak memory of one SynOOD guidance iteration.

Run: .venv/bin/python bench/skipgrad.py [--steps 5 10 20] [--image-size 64] [--batch 2] [--repeats 3]
     [--ratio-batch 8] [--sd2-size 64] [--flops-size 512] [--real-sd2-sizes 128 256 [--real-sd2-steps 2 5]]

One guidance iteration (`GuidedInpainter.guidance_step`: denoise z_T into the final latent, decode it, score it with
the classifier, and take the gradient for the noise) runs on the same tiny SD2-style inpainting pipeline and tiny
ResNet-50 of the smoke profile, in two modes:

- skip (paper Eq. 9): the denoising loop runs without a graph; the gradient stops at the final latent;
- full (Eq. 8): the whole loop records a graph and the gradient reaches the initial noise.

Everything else is the release's setting: strength 0.6 (so 20 steps run 13 UNet evaluations from t = 601),
classifier-free guidance 8 (the UNet sees 2 x batch latents), loss `official`. For each number of denoising steps it
prints:

- time: the smallest wall time of `repeats` iterations after a warm-up, the two modes alternating (torch on `--threads`
  threads);
- peak memory: torch profiler CPU memory (`profile_memory=True`): every operator's own allocations minus frees, summed
  in time order, and the maximum of that running sum over the iteration, i.e. the peak of the memory allocated
  during the iteration above what was allocated before it. (tracemalloc cannot see torch's CPU allocator.)
- saved for backward: the bytes of the distinct storages autograd keeps for the backward pass
  (`torch.autograd.graph.saved_tensors_hooks`), deterministic; it includes weights the backward pass reads, which the
  profiler's peak does not count because they were allocated before;

and the ratios full / skip. The skip gradient keeps memory constant in the number of steps while full backpropagation
grows with it; the time ratio stays modest because both modes run the same forward loop.

Batching: seconds per image of a whole generation (`GuidedInpainter.generate`, the release's 3 passes, at the last
`--steps` value) for `--ratio-batch` images generated one per call and all in one call, and their ratio. The batched
images must equal the one-at-a-time images (max abs difference below 1e-4).

Memory per image at SD2's real size (`--sd2-size`, 0 skips it): the skip gradient's backward pass keeps the VAE
decoder's activations at 512x512 and the classifier's. The decoder of SD2's VAE (its architecture, random weights:
nothing is downloaded) runs at `--sd2-size` pixels, and a torchvision ResNet-50 at 224 pixels; each image's saved
bytes are those of a batch of 2 minus those of a batch of 1 (which leaves out the weights). Convolution activations
grow with the pixel count, so the decoder's are scaled by (512 / sd2-size)^2, and halved for float16 (the mid-block's
attention over 64x64 latents adds 32 MB per image at most, none with flash attention); the classifier stays float32.

Real-size SD2 (`--real-sd2-sizes`, none by default; minutes per size on one thread): the same guidance iteration with
SD2 inpainting's real UNet (865.9 M parameters), VAE and text encoder (random weights, built by bench/gpu.py's
`sd2_inpaint_pipeline`; nothing is downloaded) and a ResNet-50 (gpu.py's `base_extractor`), one image (the UNet sees
2 latents for CFG 8), float32, at each size and each `--real-sd2-steps` value. UNet evaluations are counted as the
pipeline runs them: `len(get_timesteps(steps, 0.6))`, which for SD2's PNDM (PLMS, one step repeated at the start)
is int(0.6 x steps) + 1: 2 steps -> 2, 4 -> 3, 5 -> 4, 20 -> 13, 50 -> 31. Each row is one iteration (after one untimed
warm-up per size; a real-size iteration takes minutes here) timed under the profiler (peak as above, above the
weights) and the saved-tensor hooks, whose overhead is small against these operators. Per size and mode a line a + b x evaluations is fitted to time and to peak memory (full: b is one UNet
evaluation's graph; skip: b should be ~0 for memory, the graph stops at the final latent). Each fitted value at 13
and 31 evaluations is then carried to 512 x 512 by the growth with pixels measured between the two largest sizes
(value ~ pixels^e) and, as a second figure, proportionally to pixels (e = 1: convolutions and memory-efficient
attention, whose pixel-independent parts, the text encoder and the 224 px classifier, shrink in share); memory is
also given halved for float16 (the classifier stays float32 but is small). The time is this CPU's, float32.

FLOPs at real size (`--flops-size 512`, none by default; under a minute, nothing computed): each part of one guidance
pass for one image, counted by torch.utils.flop_counter on SD2 inpainting's real models built on the meta device with
frozen weights (as GuidedInpainter freezes them, so backward passes compute input gradients only): the UNet's
evaluation and backward, the text encoder, the VAE encoder of the masked image (the pipeline encodes it on every
call), the VAE decoder and its backward, the ResNet-50. From them: skip and full FLOPs at 20 and 50 steps and their
ratio, and the share of the work the pipeline repeats on every pass (text and masked-image encoders), which a
generation could do once instead of on each of its 3 passes.

The gradients of every mode are checked to be finite and the batched images against the single ones; the script
exits with status 1 otherwise.
"""
import argparse
import functools
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from diffusers import AutoencoderKL
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

# Benchmark the checkout this script lives in, not whichever ood_repro happens to be installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ood_repro.backbones import get_extractor  # noqa: E402
from ood_repro.synood.generate import SD2_VAE, tiny_inpaint_pipeline  # noqa: E402
from ood_repro.synood.guidance import GuidedInpainter, guidance_settings  # noqa: E402
from gpu import PROMPT, base_extractor, sd2_inpaint_pipeline  # noqa: E402  (bench/gpu.py: the real-size models)

MODES = ("skip", "full")
SD2_SIZE = SD2_VAE["sample_size"]  # SD2's images: 512 x 512


def one_iteration(inpainter, inputs, mode):
    "One guidance pass with the gradient for the noise; returns the gradient."
    z_in, noise, images, prompts, seeds = inputs
    return inpainter.guidance_step(z_in, noise, images, prompts, seeds, mode).gradient


def best_times(functions: dict, repeats: int) -> dict:
    "The smallest wall time of each function over `repeats` rounds, alternating them so that load slows them alike."
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def profiled_peak_bytes(function):
    "Peak of the running sum of allocations minus frees recorded by the torch profiler while `function` runs."
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        function()
    running = peak = 0
    for event in sorted(profiler.events(), key=lambda event: event.time_range.start):
        running += event.self_cpu_memory_usage
        peak = max(peak, running)
    return peak


def saved_for_backward(function) -> tuple:
    "(`function`'s result, bytes of the distinct storages autograd saves for backward while it runs)."
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = function()
    return result, sum(storages.values())


def seconds_per_image(inpainter, inputs, batch_sizes, repeats: int) -> tuple:
    "(best seconds per image of generating every input in batches of each size, the images of each size)."
    images, prompts, seeds = inputs
    outputs = {}

    def run(batch_size):
        results = [inpainter.generate(images[start:start + batch_size], prompts[start:start + batch_size],
                                      seeds[start:start + batch_size]) for start in range(0, len(seeds), batch_size)]
        outputs[batch_size] = torch.cat([result.images for result in results])

    seconds = best_times({size: functools.partial(run, size) for size in batch_sizes}, repeats)
    return {size: value / len(seeds) for size, value in seconds.items()}, outputs


def per_image_saved_bytes(model, make_input) -> int:
    "Bytes autograd saves for the gradient of `model`'s output in its input, per image: batch 2 minus batch 1."
    def saved(batch):
        leaf = make_input(batch).requires_grad_(True)
        return saved_for_backward(lambda: model(leaf))[1]
    return saved(2) - saved(1)


def sd2_bytes_per_image(size: int, seed: int) -> dict:
    "Saved-for-backward bytes per image of the skip gradient at 512x512: SD2's VAE decoder and a ResNet-50."
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        decoder = AutoencoderKL(**SD2_VAE).eval().requires_grad_(False)
        classifier = torchvision.models.resnet50().eval().requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)
    latent_size = size // 8
    decoder_bytes = per_image_saved_bytes(
        lambda latents: decoder.decode(latents).sample,
        lambda batch: torch.randn(batch, 4, latent_size, latent_size, generator=generator))
    classifier_bytes = per_image_saved_bytes(classifier,
                                             lambda batch: torch.rand(batch, 3, 224, 224, generator=generator))
    decoder_float16 = decoder_bytes * (SD2_SIZE / size) ** 2 / 2
    return {"decoder float32 at size": decoder_bytes, "decoder float16 at 512": decoder_float16,
            "classifier float32": classifier_bytes, "total": decoder_float16 + classifier_bytes}


def measured_call(function) -> tuple:
    "(result, wall seconds, profiler peak, saved-for-backward bytes) of one call of `function`, all from that call."
    measured = {}

    def run():
        measured["result"], measured["saved"] = saved_for_backward(function)

    start = time.perf_counter()
    peak = profiled_peak_bytes(run)
    return measured["result"], time.perf_counter() - start, peak, measured["saved"]


def real_sd2_rows(sizes, step_counts, seed: int) -> list:
    "One row per (size, steps, mode) of one guidance iteration with SD2 inpainting's real-size models (random weights)."
    pipeline = sd2_inpaint_pipeline("paper")
    classifier = base_extractor("resnet50", "paper")
    weights = sum(parameter.numel() * parameter.element_size()
                  for module in (pipeline.unet, pipeline.vae, pipeline.text_encoder, getattr(classifier, "model", classifier))
                  for parameter in module.parameters())
    print(f"\nreal-size SD2 inpainting (random weights) and ResNet-50: {weights / 2**30:.2f} GiB of float32 weights "
          f"(not in the peaks below); one image, CFG 8 (the UNet sees 2 latents), strength 0.6, "
          f"{torch.get_num_threads()} thread(s)", flush=True)
    header = (f"{'px':>4} {'steps':>5} {'UNet':>4} {'mode':>5} | {'s/image':>8} | {'peak MB':>8} | {'saved MB':>8} | "
              "gradient")
    print(header)
    print("-" * len(header), flush=True)
    rows = []
    for size in sizes:
        images = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
        warmed = False
        for steps in step_counts:
            inpainter = GuidedInpainter(pipeline, classifier, guidance_settings(
                "paper", image_size=size, num_inference_steps=steps, gradient="skip"))
            z_in, noise = inpainter.prepare(images, [seed])
            inputs = (z_in, noise, images, [PROMPT], [seed])
            pipeline.scheduler.set_timesteps(steps)
            evaluations = len(pipeline.get_timesteps(steps, inpainter.settings.strength, "cpu")[0])
            for mode in MODES:
                run = functools.partial(one_iteration, inpainter, inputs, mode)
                if not warmed:
                    run()
                    warmed = True
                gradient, seconds, peak, saved = measured_call(run)
                finite = bool(torch.isfinite(gradient).all())
                rows.append({"size": size, "steps": steps, "evaluations": evaluations, "mode": mode,
                             "seconds": seconds, "peak": peak, "saved": saved, "finite": finite})
                print(f"{size:>4} {steps:>5} {evaluations:>4} {mode:>5} | {seconds:>8.2f} | {peak / 2**20:>8.0f} | "
                      f"{saved / 2**20:>8.0f} | {'finite' if finite else 'NOT FINITE'}", flush=True)
    return rows


def print_real_sd2_extrapolation(rows: list, targets=((20, 13), (50, 31))) -> None:
    "The fitted growth with UNet evaluations per size and mode, and the extrapolation to 512 x 512 (see the docstring)."
    sizes = sorted({row["size"] for row in rows})
    fits = {}
    print("\nfit per size and mode, value = a + b x UNet evaluations (time in s, memory in MB):")
    for size in sizes:
        for mode in MODES:
            chosen = [row for row in rows if row["size"] == size and row["mode"] == mode]
            evaluations = np.array([row["evaluations"] for row in chosen], dtype=float)
            if len(set(evaluations)) < 2:
                continue
            for quantity in ("seconds", "peak"):
                values = np.array([row[quantity] for row in chosen], dtype=float)
                fits[size, mode, quantity] = np.polyfit(evaluations, values, 1)  # (b, a)
            (b_time, a_time), (b_peak, a_peak) = fits[size, mode, "seconds"], fits[size, mode, "peak"]
            print(f"  {size:>4} px {mode:>4}: time {a_time:7.2f} + {b_time:6.2f} x E s   "
                  f"peak {a_peak / 2**20:7.0f} + {b_peak / 2**20:6.0f} x E MB")
    fitted = [size for size in sizes if (size, "full", "peak") in fits and (size, "skip", "peak") in fits]
    if not fitted:
        print("  (at least two --real-sd2-steps values are needed for a fit)")
        return
    large = fitted[-1]
    small = fitted[-2] if len(fitted) > 1 else None
    print(f"\nextrapolated to {SD2_SIZE} x {SD2_SIZE}, one image, from {large} px"
          f"{f' (growth with pixels measured against {small} px)' if small else ' (proportional to pixels only)'}:")
    print(f"  {'steps':>5} {'UNet':>4} {'mode':>4} | {'s/image':>15} | {'peak GiB float32':>17} | "
          f"{'peak GiB float16':>17} | exponent e (time, memory)")
    scale = (SD2_SIZE / large) ** 2
    ratios = {}
    for steps, evaluations in targets:
        for mode in MODES:
            figures, exponents = {}, {}
            for quantity in ("seconds", "peak"):
                value = np.polyval(fits[large, mode, quantity], evaluations)
                proportional = value * scale
                exponent = None
                if small is not None:
                    below = np.polyval(fits[small, mode, quantity], evaluations)
                    if value > 0 and below > 0:
                        exponent = math.log(value / below) / math.log((large / small) ** 2)
                measured = value * scale ** exponent if exponent is not None else None
                figures[quantity] = (measured, proportional)
                exponents[quantity] = exponent
            ratios[steps, mode] = figures

            def pair(values, unit, factor=1.0):
                measured, proportional = values
                first = "-" if measured is None else f"{measured * factor / unit:.1f}"
                return f"{first} / {proportional * factor / unit:.1f}"

            shown = ", ".join("-" if value is None else f"{value:.2f}" for value in exponents.values())
            print(f"  {steps:>5} {evaluations:>4} {mode:>4} | {pair(figures['seconds'], 1):>15} | "
                  f"{pair(figures['peak'], 2**30):>17} | {pair(figures['peak'], 2**30, 0.5):>17} | {shown}")
        full, skip = ratios[steps, "full"], ratios[steps, "skip"]
        print(f"  {'':>5} {'':>4} {'full / skip':>11}: time {full['seconds'][1] / skip['seconds'][1]:.1f}x, "
              f"memory {full['peak'][1] / skip['peak'][1]:.1f}x (proportional figures)")
    print("  each cell: with the measured exponent e / proportional to pixels (e = 1); float16 halves the memory")


def counted_flops(function) -> int:
    "Floating-point operations of one call of `function` (torch.utils.flop_counter: a multiply-add counts 2)."
    with FlopCounterMode(display=False) as counter:
        function()
    return counter.get_total_flops()


def sd2_part_flops(size: int) -> dict:
    "FLOPs of each part of one guidance pass for one image at `size` px, SD2 inpainting's real models on the meta device."
    latent = size // 8
    with torch.device("meta"):
        pipeline = sd2_inpaint_pipeline("paper")
        classifier = base_extractor("resnet50", "paper")
        for module in (pipeline.unet, pipeline.vae, pipeline.text_encoder, classifier.model):
            module.requires_grad_(False)  # as GuidedInpainter freezes them: backward computes input gradients only
        prompt_embeddings = torch.randn(2, 77, pipeline.text_encoder.config.hidden_size)
        unet_input = torch.randn(2, 9, latent, latent, requires_grad=True)
        timestep = torch.tensor([601, 601])
        decoder_input = torch.randn(1, 4, latent, latent, requires_grad=True)
        classifier_input = torch.randn(1, 3, 224, 224, requires_grad=True)
        unet = counted_flops(lambda: pipeline.unet(unet_input, timestep, prompt_embeddings))
        decoder = counted_flops(lambda: pipeline.vae.decode(decoder_input))
        return {
            "UNet evaluation (CFG: 2 latents)": unet,
            "UNet backward (full only)": counted_flops(
                lambda: pipeline.unet(unet_input, timestep, prompt_embeddings).sample.sum().backward()) - unet,
            "text encoder (prompt and empty prompt)": counted_flops(
                lambda: pipeline.text_encoder(torch.zeros(2, 77, dtype=torch.long))),
            "VAE encoder (the masked image)": counted_flops(lambda: pipeline.vae.encode(torch.randn(1, 3, size, size))),
            "VAE decoder": decoder,
            "VAE decoder backward": counted_flops(
                lambda: pipeline.vae.decode(decoder_input).sample.sum().backward()) - decoder,
            "ResNet-50 forward and backward (224 px)": counted_flops(
                lambda: classifier.model(classifier_input).sum().backward()),
        }


def print_sd2_flops(size: int, targets=((20, 13), (50, 31))) -> None:
    "The FLOPs of one guidance pass per image at `size` px by part, skip and full, and what the per-pass recomputation costs."
    parts = sd2_part_flops(size)
    print(f"\nFLOPs of one guidance pass, one image at {size} px, SD2 inpainting's real models (meta device, "
          f"torch.utils.flop_counter):")
    for name, value in parts.items():
        print(f"  {name:<42} {value / 1e12:8.3f} TFLOP")
    unet, unet_backward = parts["UNet evaluation (CFG: 2 latents)"], parts["UNet backward (full only)"]
    once_per_pass = parts["text encoder (prompt and empty prompt)"] + parts["VAE encoder (the masked image)"]
    tail = sum(parts.values()) - unet - unet_backward  # everything but the UNet
    for steps, evaluations in targets:
        skip = evaluations * unet + tail
        full = skip + evaluations * unet_backward
        # generate: the passes with a gradient, then one without (decoder and classifier forward only)
        last = evaluations * unet + once_per_pass + parts["VAE decoder"]
        generate = 2 * skip + last
        print(f"  {steps} steps ({evaluations} UNet evaluations): skip {skip / 1e12:.1f}, full {full / 1e12:.1f} TFLOP, "
              f"full / skip {full / skip:.2f}x; text and masked-image encoders {once_per_pass / skip:.1%} of a skip "
              f"pass; computing them once would save {2 * once_per_pass / generate:.1%} of a 3-pass generate")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[5, 10, 20], help="num_inference_steps values")
    parser.add_argument("--image-size", type=int, default=64, help="pixels (latents are 8x smaller)")
    parser.add_argument("--batch", type=int, default=2, help="images per iteration (the release used 2)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ratio-batch", type=int, default=8, help="images per call against one per call (paper: 8)")
    parser.add_argument("--sd2-size", type=int, default=64, help="pixels of the SD2 decoder measurement (0: skip)")
    parser.add_argument("--real-sd2-sizes", type=int, nargs="*", default=[],
                        help="pixels at which to run the real-size SD2 UNet/VAE skip vs full (e.g. 128 256; minutes)")
    parser.add_argument("--real-sd2-steps", type=int, nargs="+", default=[2, 4, 5],
                        help="num_inference_steps of the real-size runs (2, 4, 5: 2, 3, 4 UNet evaluations)")
    parser.add_argument("--flops-size", type=int, default=0,
                        help="pixels of the FLOP count of one real-size SD2 guidance pass by part (e.g. 512; 0: none)")
    args = parser.parse_args(argv)
    if any(size < 8 or size % 8 for size in args.real_sd2_sizes) or min(args.real_sd2_steps) < 2:
        raise SystemExit(f"--real-sd2-sizes must be multiples of 8 and --real-sd2-steps at least 2 (strength 0.6 leaves "
                         f"no step of 1); got {args.real_sd2_sizes} and {args.real_sd2_steps}.")
    torch.set_num_threads(args.threads)

    pipeline = tiny_inpaint_pipeline(seed=args.seed, image_size=args.image_size)
    classifier = get_extractor("resnet50", "smoke", seed=args.seed)
    images = torch.rand(args.batch, 3, args.image_size, args.image_size, generator=torch.Generator().manual_seed(args.seed))
    prompts = ["A photo only remain green grass, a wooden fence, blue sky."] * args.batch
    seeds = list(range(args.seed, args.seed + args.batch))
    print(f"tiny SD2-style inpainting, {args.image_size}x{args.image_size} images "
          f"({args.image_size // 8}x{args.image_size // 8} latents), batch {args.batch}, CFG 8, strength 0.6, "
          f"{args.threads} thread(s), torch {torch.__version__}")
    header = (f"{'steps':>5} {'UNet':>4} | {'skip s':>7} {'full s':>7} {'time':>6} | {'skip MB':>8} {'full MB':>8} "
              f"{'memory':>7} | {'saved skip':>10} {'saved full':>10} {'saved':>6}")
    print(header)
    print("-" * len(header))
    failures = []
    for steps in args.steps:
        settings = guidance_settings("smoke", image_size=args.image_size, num_inference_steps=steps)
        inpainter = GuidedInpainter(pipeline, classifier, settings)
        z_in, noise = inpainter.prepare(images, seeds)
        inputs = (z_in, noise, images, prompts, seeds)
        pipeline.scheduler.set_timesteps(steps)
        unet_steps = len(pipeline.get_timesteps(steps, settings.strength, "cpu")[0])
        runs = {mode: functools.partial(one_iteration, inpainter, inputs, mode) for mode in MODES}
        peaks, saved = {}, {}
        for mode, run in runs.items():
            if not torch.isfinite(run()).all():  # also the warm-up of the timing below
                failures.append(f"{mode} gradient at {steps} steps is not finite")
            peaks[mode] = profiled_peak_bytes(run) / 2**20
            saved[mode] = saved_for_backward(run)[1] / 2**20
        seconds = best_times(runs, args.repeats)
        print(f"{steps:>5} {unet_steps:>4} | {seconds['skip']:>7.3f} {seconds['full']:>7.3f} "
              f"{seconds['full'] / seconds['skip']:>5.1f}x | {peaks['skip']:>8.1f} {peaks['full']:>8.1f} "
              f"{peaks['full'] / peaks['skip']:>6.1f}x | {saved['skip']:>10.1f} {saved['full']:>10.1f} "
              f"{saved['full'] / saved['skip']:>5.1f}x")
    print("ratios are full / skip; MB = 2**20 bytes; time: best of", args.repeats)

    batch = args.ratio_batch
    settings = guidance_settings("smoke", image_size=args.image_size, num_inference_steps=args.steps[-1])
    inpainter = GuidedInpainter(pipeline, classifier, settings)
    ratio_images = torch.rand(batch, 3, args.image_size, args.image_size,
                              generator=torch.Generator().manual_seed(args.seed))
    ratio_inputs = (ratio_images,
                    [f"A photo only remain {words}." for words in ("grass", "sky", "a fence", "water") * batch][:batch],
                    list(range(args.seed, args.seed + batch)))
    per_image, outputs = seconds_per_image(inpainter, ratio_inputs, (1, batch), args.repeats)
    difference = (outputs[1] - outputs[batch]).abs().max().item()
    print(f"\nwhole generation ({settings.iterations} passes, {args.steps[-1]} steps), {batch} images: "
          f"{per_image[1]:.3f} s/image one per call, {per_image[batch]:.3f} s/image {batch} per call, "
          f"ratio {per_image[1] / per_image[batch]:.2f}x; max |batched - single| = {difference:.1e}")
    # batched kernels round differently; the guidance gradient of the trained toy classifier amplifies that to ~2e-4,
    # still a quarter of one 8-bit level (1/255) at 1e-3
    if not difference < 1e-3:
        failures.append(f"batched images differ from single ones by {difference}")

    if args.sd2_size:
        sizes = sd2_bytes_per_image(args.sd2_size, args.seed)
        print(f"SD2 skip gradient, saved for backward per image: VAE decoder "
              f"{sizes['decoder float32 at size'] / 2**20:.0f} MB (float32, {args.sd2_size} px) -> "
              f"{sizes['decoder float16 at 512'] / 2**30:.2f} GiB (float16, 512 px); "
              f"ResNet-50 {sizes['classifier float32'] / 2**20:.0f} MB (float32, 224 px); "
              f"total {sizes['total'] / 2**30:.2f} GiB per image, {8 * sizes['total'] / 2**30:.1f} GiB for 8")
    if args.flops_size:
        print_sd2_flops(args.flops_size)
    if args.real_sd2_sizes:
        rows = real_sd2_rows(args.real_sd2_sizes, args.real_sd2_steps, args.seed)
        failures += [f"real-size {row['mode']} gradient at {row['size']} px, {row['steps']} steps is not finite"
                     for row in rows if not row["finite"]]
        print_real_sd2_extrapolation(rows)
    for failure in failures:
        print("FAILED:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
