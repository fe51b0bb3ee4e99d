"""The images/s no implementation can beat on this machine, and what the model's forward pass does.

1. Matmul GFLOP/s (fp32 and bf16) at the shapes ViT-S/14 actually runs (257 tokens x 384 wide).
2. FLOPs per image, counted by torch's FlopCounterMode on the real architecture.
3. Forward-pass-only throughput of the full-size ViT-S/14 (our Embedder on preprocessed pixels) at
   batch 1/8/16, fp32 and bf16 autocast; bf16 vectors compared with fp32 on real photos.

    python bench/compute_bound.py [--quick] [--model DIR]
"""

import time

import harness
import numpy as np

from indexer import model as M
from indexer.decode import decode_file


def matmul_gflops(dtype, m: int, k: int, n: int, seconds: float) -> float:
    import torch  # here, not at module level: `--help` and the importers stay light

    a = torch.randn(m, k).to(dtype)
    b = torch.randn(k, n).to(dtype)
    torch.mm(a, b)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        torch.mm(a, b)
        count += 1
    return 2 * m * k * n * count / (time.perf_counter() - started) / 1e9


def flops_per_image(net, size: int = 224) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, size, size)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        net(pixel_values=x)
    return counter.get_total_flops()


def forward_rate(embedder, batch: int, repeat: int) -> float:
    pixels = np.random.default_rng(0).integers(0, 255, (batch, 224, 224, 3), dtype=np.uint8)
    seconds = harness.median_time(lambda: embedder.embed(pixels), repeat)
    return batch / seconds


def real_photo_pixels(recipe, count: int) -> np.ndarray:
    files = sorted(harness.PHOTOS.glob("*.png"))[:count]
    return np.stack([decode_file(str(f), recipe, None).pixels for f in files])


def main() -> None:
    ap = harness.parser(__doc__, quick="smoke run: short timings", model=True)
    ap.add_argument("--batches", default="1,8,16")
    args = ap.parse_args()
    args.model = harness.model_dir(args.model)
    import torch

    seconds = 0.5 if args.quick else 3.0
    repeat = 2 if args.quick else 5
    tokens = 16 * 257  # batch 16 x (256 patches + CLS): the MLP's matmul shape
    peak = {
        "fp32": matmul_gflops(torch.float32, tokens, 384, 1536, seconds),
        "bf16": matmul_gflops(torch.bfloat16, tokens, 384, 1536, seconds),
        "fp32_square_2048": matmul_gflops(torch.float32, 2048, 2048, 2048, seconds),
    }
    fp32 = M.load(args.model, device="cpu", dtype="fp32")
    flops = flops_per_image(fp32.net)
    bound = {k: peak[k] * 1e9 / flops for k in ("fp32", "bf16")}
    bf16 = M.load(args.model, device="cpu", dtype="bf16")
    rows, forward = [], {}
    for batch in [int(b) for b in args.batches.split(",")]:
        for name, emb in (("fp32", fp32), ("bf16", bf16)):
            if args.quick and name == "bf16" and batch != 8:
                continue
            rate = forward_rate(emb, batch, repeat)
            forward[f"{name}_b{batch}"] = rate
            rows.append([name, batch, rate, 100 * rate / bound[name]])
    attn = {}
    for impl in ("eager", "sdpa"):
        fp32.net.set_attn_implementation(impl)
        attn[impl] = forward_rate(fp32, 8, repeat)
    fp32.net.set_attn_implementation("sdpa")
    pixels = real_photo_pixels(fp32.recipe, 8 if args.quick else 24)
    a, b = fp32.embed(pixels), bf16.embed(pixels)
    cos = (a * b).sum(1)
    data = {
        "model": args.model,
        "gflop_per_image": flops / 1e9,
        "matmul_gflops": peak,
        "bound_images_per_s": bound,
        "forward_images_per_s": forward,
        "attention_fp32_b8_images_per_s": attn,
        "bf16_vs_fp32_cosine": {"min": float(cos.min()), "max_distance": float(1 - cos.min())},
        "quick": args.quick,
    }
    md = (
        f"ViT-S/14 @ 224: **{flops / 1e9:.2f} GFLOP per image** (torch FlopCounterMode, "
        "multiply-add = 2 FLOP).\n\n"
        + harness.table(
            ["matmul (4112x384 @ 384x1536)", "GFLOP/s", "ceiling images/s"],
            [
                ["fp32", peak["fp32"], bound["fp32"]],
                ["bf16", peak["bf16"], bound["bf16"]],
                ["fp32, 2048^3", peak["fp32_square_2048"], peak["fp32_square_2048"] * 1e9 / flops],
            ],
        )
        + "\nForward pass only (Embedder.embed on preprocessed uint8 pixels, inference mode):\n\n"
        + harness.table(["dtype", "batch", "images/s", "% of matmul ceiling"], rows)
        + f"\nAttention at batch 8, fp32: eager {attn['eager']:.2f} images/s, "
        f"SDPA {attn['sdpa']:.2f} images/s (SDPA is transformers' default for Dinov2).\n"
        f"\nbf16 autocast vs fp32 on {len(pixels)} real photos: min cosine {cos.min():.5f} "
        f"(distance {1 - cos.min():.1e}; limit 1e-2).\n"
    )
    harness.write_results("perf_compute_bound", md, data)


if __name__ == "__main__":
    main()
