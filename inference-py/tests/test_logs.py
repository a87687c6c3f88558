from __future__ import annotations

import json
import logging

import pytest

from tandem_inference import logs


def test_one_json_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.configure("info")
        log = logging.getLogger("tandem_inference.test")
        log.debug("hidden")
        log.info("model %s loaded", "digits", extra={"version": "1"})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed\nbadly")
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    first, second = map(json.loads, lines)
    assert set(first) == {"ts", "level", "msg", "logger", "version"}
    assert first["ts"].endswith("Z")
    assert (first["level"], first["msg"], first["logger"], first["version"]) == (
        "info",
        "model digits loaded",
        "tandem_inference.test",
        "1",
    )
    assert (second["level"], second["msg"]) == ("error", "failed\nbadly")
    assert "ValueError: boom" in second["exc"]
