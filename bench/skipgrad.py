"""Skip gradient vs full backpropagation: time and peak memory of one SynOOD guidance iteration.

Run: .venv/bin/python bench/skipgrad.py [--steps 5 10 20] [--image-size 64] [--batch 2] [--repeats 3]
     [--ratio-batch 8] [--sd2-size 64]

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

The gradients of both modes are checked to be finite and the batched images against the single ones; the script
exits with status 1 otherwise.
"""
import argparse
import functools
import sys
import time
from pathlib import Path

import torch
import torchvision
from diffusers import AutoencoderKL
from torch.profiler import ProfilerActivity, profile

# Benchmark the checkout this script lives in, not whichever ood_repro happens to be installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ood_repro.backbones import get_extractor  # noqa: E402
from ood_repro.synood.generate import tiny_inpaint_pipeline  # noqa: E402
from ood_repro.synood.guidance import GuidedInpainter, guidance_settings  # noqa: E402

MODES = ("skip", "full")
SD2_SIZE = 512
# the VAE of stabilityai/stable-diffusion-2-inpainting (vae/config.json on the Hugging Face Hub)
SD2_VAE = {"in_channels": 3, "out_channels": 3, "latent_channels": 4, "block_out_channels": (128, 256, 512, 512),
           "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4,
           "layers_per_block": 2, "norm_num_groups": 32, "sample_size": SD2_SIZE}


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
        return saved_for_backward_bytes(lambda: model(leaf))
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
    if not difference < 1e-4:
        failures.append(f"batched images differ from single ones by {difference}")

    if args.sd2_size:
        sizes = sd2_bytes_per_image(args.sd2_size, args.seed)
        print(f"SD2 skip gradient, saved for backward per image: VAE decoder "
              f"{sizes['decoder float32 at size'] / 2**20:.0f} MB (float32, {args.sd2_size} px) -> "
              f"{sizes['decoder float16 at 512'] / 2**30:.2f} GiB (float16, 512 px); "
              f"ResNet-50 {sizes['classifier float32'] / 2**20:.0f} MB (float32, 224 px); "
              f"total {sizes['total'] / 2**30:.2f} GiB per image, {8 * sizes['total'] / 2**30:.1f} GiB for 8")
    for failure in failures:
        print("FAILED:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
