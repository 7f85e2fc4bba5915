"""docs/vision.md's snippet runs as written."""

from __future__ import annotations

import os
import re

import pytest

pytest.importorskip("PIL")

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "vision.md")


def test_snippets_run(capsys):
    snippets = re.findall(r"```python\n(.*?)```", open(DOC).read(), re.S)
    assert len(snippets) == 12  # (the transform modules' snippet prints nothing)
    for snippet in snippets:
        exec(compile(snippet, "docs/vision.md", "exec"), {"__name__": "__docs__"})
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("ember.Size([4, 3, 32, 32])")
    assert out[1] == "ember.Size([3, 32, 32]) (32, 32) ember.Size([32, 32])"
    assert out[2] == "BoundingBoxes True"  # the warps snippet
    # the tv_tensors snippet: Video, a user's kernel, set_return_type, rotated boxes
    assert out[3:6] == ["Video Heatmap", "Video", "[1.0, 2.0, 3.598076105117798, 0.5]"]
    assert out[6:8] == ["[2.0, 9.0, 3.0, 4.0, 120.0]", "hard [7.23, 5.0, 4.91, 2.91, 45.0]"]
    assert out[8] == "['x', 'conv1', 'bn1', 'relu', 'maxpool', 'layer1.0.conv1'] 70"  # features
    assert out[9] == "{'0': (1, 32, 8, 8), '1': (1, 32, 2, 2)}"
    assert out[-8] == "ember.Size([2, 2])"  # the quantizable models' snippet
    assert out[-7:-5] == ["tensor([0, 2])", "ember.Size([3, 8, 7, 7])"]  # the ops snippet
    assert out[-5] == "ember.Size([2, 32, 20, 20])"  # the deformable convolution snippet
    assert out[-4] == str(  # the detection snippet
        ["loss_box_reg", "loss_classifier", "loss_mask", "loss_objectness", "loss_rpn_box_reg"]
    )
    assert out[-3] == "['boxes', 'labels', 'masks', 'scores'] (64, 80)"
    # the single-stage snippet
    assert out[-2:] == ["['bbox_regression', 'classification']", "['boxes', 'labels', 'scores']"]
