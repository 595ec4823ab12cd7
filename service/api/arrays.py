"""Array responses: large index and weight arrays, serialised without per-item overhead.

FastAPI's default encoder walks a list item by item; for millions of values that costs
seconds, so arrays are written straight to JSON text here.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import numpy.typing as npt
from fastapi.responses import Response


def array_json_response(
    meta: dict[str, Any], key: str, values: npt.NDArray[Any], *, status_code: int = 200
) -> Response:
    """``{**meta, key: [...]}`` as JSON. Floats keep their exact (shortest round-trip) value."""
    head = json.dumps(meta, separators=(",", ":"))[:-1]
    items = values.tolist()
    if values.dtype.kind == "f":
        body = ",".join(map(float.__repr__, items))
    else:
        body = ",".join(map(str, items))
    sep = "," if meta else ""
    content = f'{head}{sep}"{key}":[{body}]}}'
    return Response(content=content, status_code=status_code, media_type="application/json")
