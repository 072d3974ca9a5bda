"""Skip gradient vs full backpropagation: time and peak memory of one SynOOD guidance iteration.

Run: .venv/bin/python bench/skipgrad.py [--steps 5 10 20] [--image-size 64] [--batch 2] [--repeats 3]

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
The gradients of both modes are checked to be finite; the script exits with status 1 otherwise.
"""
import argparse
import functools
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

# Benchmark the checkout this script lives in, not whichever ood_repro happens to be installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ood_repro.backbones import get_extractor  # noqa: E402
from ood_repro.synood.generate import tiny_inpaint_pipeline  # noqa: E402
from ood_repro.synood.guidance import GuidedInpainter, guidance_settings  # noqa: E402

MODES = ("skip", "full")


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


def saved_for_backward_bytes(function):
    "Bytes of the distinct storages autograd saves for backward while `function` runs."
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        function()
    return sum(storages.values())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[5, 10, 20], help="num_inference_steps values")
    parser.add_argument("--image-size", type=int, default=64, help="pixels (latents are 8x smaller)")
    parser.add_argument("--batch", type=int, default=2, help="images per iteration (the release used 2)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
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
            saved[mode] = saved_for_backward_bytes(run) / 2**20
        seconds = best_times(runs, args.repeats)
        print(f"{steps:>5} {unet_steps:>4} | {seconds['skip']:>7.3f} {seconds['full']:>7.3f} "
              f"{seconds['full'] / seconds['skip']:>5.1f}x | {peaks['skip']:>8.1f} {peaks['full']:>8.1f} "
              f"{peaks['full'] / peaks['skip']:>6.1f}x | {saved['skip']:>10.1f} {saved['full']:>10.1f} "
              f"{saved['full'] / saved['skip']:>5.1f}x")
    print("ratios are full / skip; MB = 2**20 bytes; time: best of", args.repeats)
    for failure in failures:
        print("FAILED:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
