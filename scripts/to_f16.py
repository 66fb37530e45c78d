"""Convert every float32 tensor of a safetensors file to float16 (halves the shipped MiniLM)."""
import sys

import numpy as np
from safetensors.numpy import load_file, save_file

src, dst = sys.argv[1], sys.argv[2]
tensors = load_file(src)
save_file({k: (v.astype(np.float16) if v.dtype == np.float32 else v) for k, v in tensors.items()}, dst,
          metadata={"format": "pt"})
