"""Chaos: the disk fills up during a checkpoint (a 2 MiB tmpfs as the checkpoint directory).

Every save path fails with an error naming ENOSPC, the previous checkpoint still loads bit for
bit, and the failed save leaves no file behind. CI runs ``ember.save`` (both formats) and DCP
(< 1 s each); the Trainer's checkpoint (a Ray job) carries ``full``. See diskfull.py and
benchmarks/chaos.py, which prints the table in docs/failure_modes.md.
"""

from __future__ import annotations

import errno
import os

import pytest
from diskfull import available, run_disk_full


@pytest.fixture
def root():
    if not available():
        pytest.skip("needs root to mount a tmpfs")


@pytest.mark.parametrize("kind", ["ember.save", "ember.save (zip)", "dcp.save"])
def test_disk_full_save_fails_naming_enospc_and_keeps_previous(root, kind):
    out = run_disk_full(kind)
    assert out.error is not None, "the save into a full filesystem did not fail"
    assert "ENOSPC" in out.error and "No space left on device" in out.error, out.error
    if kind.startswith("ember.save"):
        # an OSError with its errno, so `except OSError` and errno checks work
        assert out.error.startswith("OSError") and out.errno == errno.ENOSPC, out.error
        assert "ckpt.pt" in out.error and "previous file is unchanged" in out.error
    else:
        assert "previous one is unchanged" in out.error and "rank 0" in out.error
    assert out.previous_loads
    assert out.leftovers == [] and out.leaked_bytes == 0


@pytest.mark.full
def test_disk_full_trainer_checkpoint(root, ray_session):
    out = run_disk_full("Trainer checkpoint")
    assert out.error is not None and "ENOSPC" in out.error, out.error
    assert out.previous_loads
    assert out.leftovers == [], out.leftovers


def test_write_errors_become_oserrors_naming_the_errno():
    import safetensors

    from ember._serialization_io import os_error

    exc = safetensors.SafetensorError("I/O error: No space left on device (os error 28)")
    err = os_error(exc, "/ckpt/model.pt")
    assert type(err) is OSError and err.errno == errno.ENOSPC
    assert "ENOSPC" in str(err) and "/ckpt/model.pt" in str(err)
    quota = os_error(OSError(errno.EDQUOT, "Disk quota exceeded"), "/x", note="")
    assert quota.errno == errno.EDQUOT and str(quota).endswith("while writing /x")
    # other failures keep their own type and message
    assert os_error(PermissionError(errno.EACCES, "denied"), "/x") is None
    assert os_error(safetensors.SafetensorError("bad header"), "/x") is None
    assert os_error(ValueError("no"), "/x") is None


def test_trainer_checkpoint_persist_on_full_disk_names_enospc(root, tmp_path):
    # the driver's half of the Trainer's checkpoint (the Ray run is the `full` test above)
    from diskfull import small_tmpfs

    from ember.distributed.train.checkpoint import Checkpoint, unpack_into

    (tmp_path / "state.bin").write_bytes(b"\1" * (4 << 20))  # 4 MiB > the 2 MiB disk
    blob = Checkpoint.from_directory(str(tmp_path)).pack()
    with small_tmpfs() as where:
        dest = f"{where}/run/checkpoint_000001"
        with pytest.raises(OSError, match="ENOSPC") as info:
            unpack_into([blob], dest)
        assert info.value.errno == errno.ENOSPC and "checkpoint_000001" in str(info.value)
        assert os.listdir(f"{where}/run") == []  # the partial copy is gone
