from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from prolific_mcp.uploads.service import DatasetService, ServiceOptions


def test_a_calls_wait_defaults_and_is_clamped_to_the_maximum(tmp_path: Path) -> None:
    options = ServiceOptions(
        mode="sandbox", origin="sandbox", allowed_dirs=[], state_dir=tmp_path, default_wait=5, max_wait=30
    )
    service = DatasetService(cast(Any, None), cast(Any, None), cast(Any, None), options)
    assert service.clamp_wait(None) == 5
    assert service.clamp_wait(100) == 30
    assert service.clamp_wait(-3) == 0
    assert service.clamp_wait(12.5) == 12.5
