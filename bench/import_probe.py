"""Which modules vLLM's OpenAI server needs at import time and this machine lacks (one pass: each
missing module is stubbed and the import retried, so every missing name is listed at once).
The compiled _C kernels are expected missing before step b."""

import importlib
import sys
import traceback
import types

missing = []
for _ in range(60):
    try:
        importlib.import_module("vllm.entrypoints.openai.api_server")
        break
    except ModuleNotFoundError as e:
        name = e.name or str(e)
        missing.append(name)
        for k in [k for k in sys.modules if k.startswith("vllm")]:
            del sys.modules[k]
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            m = types.ModuleType(".".join(parts[:i]))
            m.__path__ = []  # type: ignore[attr-defined]
            sys.modules.setdefault(".".join(parts[:i]), m)
    except Exception:  # noqa: BLE001
        traceback.print_exc(limit=3)
        break
print("MISSING MODULES:", missing)
