"""The model card's loop: PIL open -> AutoImageProcessor -> AutoModel, one image at a time.

python bench/naive_loop.py MODEL_DIR FILE...   -> JSON {"images", "seconds", "startup"}
"""

import json
import sys
import time

if sys.argv[1:2] in (["-h"], ["--help"]):  # a helper other scripts run: its usage, nothing else
    print(__doc__.strip())
    sys.exit(0)

started = time.perf_counter()
import pillow_heif  # noqa: E402  (HEIC support, as any HEIC user of the card would add)
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import AutoImageProcessor, AutoModel  # noqa: E402

pillow_heif.register_heif_opener()


def main() -> None:
    model_dir, files = sys.argv[1], sys.argv[2:]
    processor = AutoImageProcessor.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir)
    startup = time.perf_counter() - started
    loop = time.perf_counter()
    for path in files:
        image = Image.open(path)
        inputs = processor(images=image, return_tensors="pt")
        with torch.no_grad():
            outputs = model(**inputs)
        outputs.last_hidden_state[:, 0]  # the CLS embedding
    seconds = time.perf_counter() - loop
    print(json.dumps({"images": len(files), "seconds": seconds, "startup": startup}))


if __name__ == "__main__":
    main()
