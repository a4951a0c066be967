"""Benchmark building the training dataset: seconds and peak memory for up to 100,000 synthetic studies.

Each study is a manifest row listing `images` files (a lateral first, then a frontal); all rows point at
a handful of shared 2,048 x 2,500 PNGs, so nothing is rendered per study. Each configuration runs in a
fresh process and reports its own peak RSS. With lazy decoding, memory grows with the number of studies
(prompt and reference text, one path per image) but not with the images: no pixel is decoded while
building, and 4 listed images per study cost what 1 does (only the key frontal one is kept).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SENTENCES = ("The heart size is normal.", "No focal consolidation.", "Small left pleural effusion.",
             "Mild pulmonary edema.", "Bibasilar atelectasis.", "No pneumothorax.", "Lungs are clear.")


def write_fixture(folder: Path, studies: int, images: int) -> Path:
    """A manifest of `studies` rows, each listing `images` shared files (lateral views first, then PA)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for view in ("lateral", "pa"):
        path = folder / f"{view}.png"
        if not path.is_file():
            pixels = (np.random.default_rng(0).random((2500, 2048)) * 255).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(path)
    manifest = folder / f"manifest_{studies}_{images}.jsonl"
    if not manifest.is_file():
        with manifest.open("w") as handle:
            for i in range(studies):
                files = ["lateral.png"] * (images - 1) + ["pa.png"]
                views = ["LATERAL"] * (images - 1) + ["PA"]
                findings = " ".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(4)) + f" Study {i}."
                handle.write(json.dumps({"study_id": f"s{i}", "images": files, "views": views, "findings": findings,
                                         "impression": SENTENCES[i % len(SENTENCES)],
                                         "indication": "Shortness of breath."}) + "\n")
    return manifest


def measure(manifest: str, check_images: bool, read_rows: int) -> dict:
    """Run in a child process: build the dataset, then read `read_rows` rows (decode + resize to 512)."""
    import datasets  # noqa: F401  (imported before the baseline: the figure is the data, not the libraries)

    from unirg.data.config import DataConfig, PromptConfig
    from unirg.data.loading import load_splits

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    data = DataConfig(source="manifest", path=manifest, check_images=check_images)
    work = Path(manifest).parent / "work"
    start = time.perf_counter()
    splits = load_splits(data, PromptConfig(), work)
    build_s = time.perf_counter() - start
    after_build = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    for i in range(read_rows):
        [image] = splits.train[i]["images"]
        assert image.size == (512, 512)
    read_s = time.perf_counter() - start
    return {"studies": splits.train.num_rows, "build_s": round(build_s, 1),
            "rss_before_mib": round(baseline), "rss_after_build_mib": round(after_build),
            "rows_read": read_rows, "ms_per_row_read": round(1000 * read_s / max(read_rows, 1), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench-dataset", help="Folder for the shared images and manifests.")
    parser.add_argument("--studies", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--images", type=int, nargs="+", default=[1, 4], help="Images listed per study.")
    parser.add_argument("--check-images", action="store_true", help="Also open every image header while loading.")
    parser.add_argument("--read-rows", type=int, default=50)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        manifest, check, rows = args.child
        print(json.dumps(measure(manifest, check == "1", int(rows))))
        return
    print("| studies | images listed / study | check_images | build (s) | peak RSS before → after build (MiB) "
          "| read one row (ms) |")
    print("|---|---|---|---|---|---|")
    for studies in args.studies:
        for images in args.images:
            manifest = write_fixture(Path(args.out), studies, images)
            child = subprocess.run([sys.executable, __file__, "--child", str(manifest), "1" if args.check_images else "0",
                                    str(args.read_rows)], capture_output=True, text=True, check=True)
            result = json.loads(child.stdout.strip().splitlines()[-1])
            print(f"| {result['studies']:,} | {images} | {args.check_images} | {result['build_s']} | "
                  f"{result['rss_before_mib']} → {result['rss_after_build_mib']} | {result['ms_per_row_read']} |",
                  flush=True)


if __name__ == "__main__":
    main()
