"""Hostile files and crashes at the worst moment, one table-driven test per class of input.

- a link planted under every name ``generate`` writes (to a file outside the run, or
  dangling): nothing outside the run directory is written or created;
- a FIFO, a device, a directory, a hard link or an oversized or deep file under every name
  it reads: one line and exit code 2, or a correct resume; never a hang (every run has a
  deadline) and never a traceback;
- a resume certifies what it keeps: an image whose bytes differ from the manifest's
  SHA-256 is made again and reported; old manifests without the column still resume;
- hostile checkpoints (FIFO or device files, 1 MiB+ or 200,000-deep JSON, huge T or
  model sizes, integer weights, a ``weights_file`` outside the directory): one
  ``CheckpointError`` naming the file, before anything large is allocated;
- ``kill -9`` at every file-system step of a checkpoint save: the checkpoint on disk is
  always the whole old one or the whole new one, and loads;
- the table cache cut mid-line or holding bad lines, and its path checked first;
- benchmark tables: written atomically, into the committed results only with --publish;
  ``bench --name`` a plain name.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import json
import os
import shutil
import signal
import time
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save

import diffusion_lib.bench.tables as tables
from diffusion_lib import files
from diffusion_lib.bench.cache import CacheWarning, TableCache, check_cache_path
from diffusion_lib.bench.tables import table_parser
from diffusion_lib.cli import main
from diffusion_lib.models import UNet, UNetConfig
from diffusion_lib.pretrained import (
    WEIGHTS_DIR,
    CheckpointError,
    checkpoint_files,
    load_checkpoint,
    save_checkpoint,
)

N = 6
ARGS = [
    "generate",
    "--no-progress",
    "--model",
    "digits",
    "-n",
    str(N),
    "--steps",
    "2",
    "--labels",
    "0-9",
    "--seed",
    "3",
    "--threads",
    "1",
    "--batch-size",
    "2",
]
PID = os.getpid()


@contextlib.contextmanager
def deadline(seconds: float):
    """Fail with TimeoutError instead of hanging (SIGALRM interrupts a blocking open)."""

    def expired(signum, frame):
        raise TimeoutError(f"no answer within {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _tree(root: Path) -> dict[str, bytes | str]:
    """Every entry under ``root``: a file's bytes, a link's target, a FIFO's kind."""
    found: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            found[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            found[rel] = path.read_bytes()
        else:
            found[rel] = "dir" if path.is_dir() else "special"
    return found


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> dict[str, bytes]:
    """The files of one uninterrupted run (PNGs, run.json, manifest.csv)."""
    out = tmp_path_factory.mktemp("clean") / "run"
    assert main([*ARGS, "--out", str(out)]) == 0
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name != ".lock"}


def _partial(clean: dict[str, bytes], out: Path, images: int = 2) -> None:
    """A run killed after ``images`` images: run.json and the first PNGs, no manifest."""
    out.mkdir(parents=True)
    (out / "run.json").write_bytes(clean["run.json"])
    for i in range(images):
        (out / f"sample_{i:05d}.png").write_bytes(clean[f"sample_{i:05d}.png"])


def _run(out: Path, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    with deadline(90):
        code = main([*ARGS, "--out", str(out)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _resumed_exactly(out: Path, clean: dict[str, bytes]) -> None:
    """The directory holds exactly the clean run's files, each a regular file."""
    names = sorted(p.name for p in out.iterdir() if p.name != ".lock")
    assert names == sorted(clean), names
    for name, data in clean.items():
        assert (out / name).is_file() and not (out / name).is_symlink(), name
        assert (out / name).read_bytes() == data, name


def _outcome(code: int, out: str, err: str, name: str) -> str:
    """Classify a CLI result: 'message' (one line, exit 2, names the file), 'resumed'
    (exit 0, silent stderr), or 'traceback' / 'other' (a failure of this test)."""
    if "Traceback" in err:
        return "traceback"
    if code == 2 and len(err.strip().splitlines()) == 1 and name in err:
        return "message"
    if code == 0 and err == "" and len(out.strip().splitlines()) == 1:
        return "resumed"
    return f"other (code {code}: {err!r})"


# ------------------------------------------------ links planted under every name written
WRITTEN = [  # (name, a run in progress there?, expected outcome)
    (".lock", False, "message"),
    (".lock", True, "message"),
    ("run.json", False, "message"),
    (f"run.json.{PID}.tmp", False, "resumed"),  # the temp names of the old scheme
    (f"run.json.{PID}-0123abcd.tmp", False, "resumed"),
    ("run.json.tmp", True, "resumed"),
    ("manifest.csv", True, "resumed"),
    (f"manifest.csv.{PID}.tmp", True, "resumed"),
    ("sample_00004.png", True, "resumed"),  # a link is not a whole image: made again
    (f"sample_00004.png.{PID}.tmp", True, "resumed"),
    (f"sample_00005.png.{PID}-0123abcd.tmp", True, "resumed"),
]


@pytest.mark.parametrize("target", ["victim", "valid image", "dangling"])
@pytest.mark.parametrize(("name", "in_progress", "expected"), WRITTEN)
def test_a_link_planted_under_a_written_name_is_never_followed(
    name, in_progress, expected, target, clean, tmp_path, capsys
):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_bytes(b"precious data\n")
    (outside / "image.png").write_bytes(clean["sample_00000.png"])  # whole, of the right size
    pointee = {
        "victim": outside / "victim",
        "valid image": outside / "image.png",
        "dangling": outside / "absent",
    }[target]
    out = tmp_path / "run"
    if in_progress:
        _partial(clean, out)
    else:
        out.mkdir()
    os.symlink(pointee, out / name)
    before = _tree(outside)
    code, stdout, err = _run(out, capsys)
    assert _tree(outside) == before  # nothing outside was written, truncated or created
    assert _outcome(code, stdout, err, name) == expected
    if expected == "resumed":
        _resumed_exactly(out, clean)
    else:
        assert (out / name).is_symlink()  # left for the user to look at


# ------------------------------------------------ FIFOs, devices, directories where it reads
def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _dev_zero(path: Path) -> None:
    os.symlink("/dev/zero", path)


def _directory(path: Path) -> None:
    path.mkdir()
    (path / "keep").write_text("x")


def _too_big(path: Path) -> None:
    path.write_bytes(
        b" " * (files.JSON_MAX_BYTES + 1)
        if path.suffix == ".json"
        else b"\x89PNG\r\n\x1a\n" + bytes(1 << 20)
    )


def _deep(path: Path) -> None:
    path.write_text("[" * 200_000 + "]" * 200_000)


def _not_utf8(path: Path) -> None:
    path.write_bytes(b'{"format": "diffusion_lib.generate", "x": "\xff\xfe"}')


READ = [  # (name, in progress, what is put there, expected outcome)
    (".lock", False, _fifo, "message"),
    (".lock", True, _directory, "message"),
    ("run.json", False, _fifo, "message"),
    ("run.json", True, _fifo, "message"),
    ("run.json", True, _dev_zero, "message"),
    ("run.json", True, _directory, "message"),
    ("run.json", True, _too_big, "message"),
    ("run.json", True, _deep, "message"),
    ("run.json", True, _not_utf8, "message"),
    ("manifest.csv", True, _fifo, "resumed"),
    ("manifest.csv", True, _dev_zero, "resumed"),
    ("manifest.csv", True, _directory, "message"),
    ("manifest.csv", True, _deep, "resumed"),
    ("sample_00003.png", True, _fifo, "resumed"),
    ("sample_00003.png", True, _dev_zero, "resumed"),
    ("sample_00003.png", True, _too_big, "resumed"),
    ("sample_00003.png", True, _directory, "message"),
]


@pytest.mark.parametrize(
    ("name", "in_progress", "plant", "expected"),
    READ,
    ids=[f"{n}-{p.__name__[1:]}-{'resume' if r else 'new'}" for n, r, p, _ in READ],
)
def test_what_is_read_must_be_a_regular_bounded_file(
    name, in_progress, plant, expected, clean, tmp_path, capsys
):
    out = tmp_path / "run"
    if in_progress:
        _partial(clean, out)
        (out / name).unlink(missing_ok=True)
    else:
        out.mkdir()
    plant(out / name)
    kept = _tree(out)
    code, stdout, err = _run(out, capsys)
    assert _outcome(code, stdout, err, name) == expected
    if expected == "resumed":
        _resumed_exactly(out, clean)
    else:
        assert _tree(out) == kept  # refused before anything was written or removed


def test_a_hard_linked_lock_is_refused_and_its_file_kept(clean, tmp_path, capsys):
    outside = tmp_path / "victim"
    outside.write_bytes(b"precious data\n")
    out = tmp_path / "run"
    _partial(clean, out)
    os.link(outside, out / ".lock")
    code, stdout, err = _run(out, capsys)
    assert _outcome(code, stdout, err, ".lock") == "message" and "hard links" in err
    assert outside.read_bytes() == b"precious data\n"


# ------------------------------------------------ a resume certifies what it keeps
def _other_image(out: Path, clean: dict[str, bytes]) -> None:
    (out / "sample_00001.png").write_bytes(clean["sample_00004.png"])  # whole, but not #1


def _one_pixel(out: Path, clean: dict[str, bytes]) -> None:
    from PIL import Image

    with Image.open(out / "sample_00002.png") as img:
        pixels = img.copy()
    pixels.putpixel((3, 3), (pixels.getpixel((3, 3)) + 1) % 256)
    pixels.save(out / "sample_00002.png", format="PNG")


def _old_manifest(out: Path, clean: dict[str, bytes]) -> None:
    rows = list(csv.reader(clean["manifest.csv"].decode().splitlines()))
    text = "\n".join(",".join(r[:4]) for r in rows) + "\n"  # the 4 columns of before
    (out / "manifest.csv").write_text(text)


def _bad_hashes(out: Path, clean: dict[str, bytes]) -> None:
    (out / "manifest.csv").write_text(
        clean["manifest.csv"].decode().replace(",", ",,", 3) + "garbage,\xff,,\n"
    )


def _odd_rows(out: Path, clean: dict[str, bytes]) -> None:
    zeros = "0" * 64
    (out / "manifest.csv").write_text(
        clean["manifest.csv"].decode() + f"sample_00001.png,\u00b2,4,1,{zeros}\n"
        f"sample_00001.png,{'9' * 4500},4,1,{zeros}\nsample_00002.png,2,5,2,{'g' * 64}\n"
    )


CERTIFY = [  # (change to a finished run, images made again, reported)
    (_other_image, 1, True),
    (_one_pixel, 1, True),
    (_old_manifest, 0, False),
    (_bad_hashes, 0, False),
    (_odd_rows, 0, False),
]


@pytest.mark.parametrize(
    ("change", "remade", "reported"), CERTIFY, ids=[c.__name__[1:] for c, _, _ in CERTIFY]
)
def test_a_resume_checks_each_kept_image_against_the_manifest(
    change, remade, reported, clean, tmp_path, capsys
):
    out = tmp_path / "run"
    out.mkdir()
    for name, data in clean.items():
        (out / name).write_bytes(data)
    change(out, clean)
    code, stdout, err = _run(out, capsys)
    assert code == 0 and err == "", err
    assert f"generated {remade} images ({N - remade} already present)" in stdout
    assert ("did not match the SHA-256 in manifest.csv" in stdout) == reported, stdout
    _resumed_exactly(out, clean)  # the manifest is rewritten with every hash


def test_the_manifest_records_each_images_sha256(clean):
    rows = list(csv.DictReader(clean["manifest.csv"].decode().splitlines()))
    assert len(rows) == N
    for row in rows:
        assert row["sha256"] == hashlib.sha256(clean[row["file"]]).hexdigest()


# ------------------------------------------------ hostile checkpoints
def _legacy_pair(tmp_path: Path, name: str = "m") -> tuple[Path, Path]:
    """A version-1 checkpoint like the shipped ones: m.json + m.safetensors (a copy)."""
    shutil.copy(WEIGHTS_DIR / "digits.json", tmp_path / f"{name}.json")
    shutil.copy(WEIGHTS_DIR / "digits.safetensors", tmp_path / f"{name}.safetensors")
    return tmp_path / f"{name}.json", tmp_path / f"{name}.safetensors"


def _edit(json_path: Path, change) -> None:
    info = json.loads(json_path.read_text())
    change(info)
    json_path.write_text(json.dumps(info))


def _field(path: str, value):
    def change(info):
        *parents, last = path.split(".")
        for key in parents:
            info = info[key]
        info[last] = value

    return change


def _retyped(dtype: torch.dtype):
    def plant(json_path: Path, weights: Path) -> None:
        from safetensors.torch import load_file

        state = {k: v.to(dtype) for k, v in load_file(weights).items()}
        data = save(state)
        weights.unlink()
        weights.write_bytes(data)
        _edit(json_path, _field("weights_sha256", hashlib.sha256(data).hexdigest()))

    return plant


def _replace(which: str, plant):
    def change(json_path: Path, weights: Path) -> None:
        path = json_path if which == "json" else weights
        path.unlink()
        plant(path)

    return change


def _json_change(change):
    return lambda json_path, weights: _edit(json_path, change)


CHECKPOINTS = [  # (case, change, words the one-line error holds)
    ("json-fifo", _replace("json", _fifo), ["m.json", "FIFO"]),
    ("json-dev-zero", _replace("json", _dev_zero), ["m.json", "character device"]),
    ("json-directory", _replace("json", _directory), ["m.json", "directory"]),
    ("json-too-big", _replace("json", _too_big), ["m.json", "bytes"]),
    ("json-deep", _replace("json", _deep), ["m.json", "nested"]),
    (
        "json-deep-inside",
        _json_change(_field("note", json.loads("[" * 500 + "]" * 500))),
        ["m.json", "nested"],
    ),
    ("json-not-utf8", _replace("json", _not_utf8), ["m.json", "UTF-8"]),
    ("weights-fifo", _replace("weights", _fifo), ["m.safetensors", "FIFO"]),
    ("weights-dev-zero", _replace("weights", _dev_zero), ["m.safetensors", "character device"]),
    ("weights-directory", _replace("weights", _directory), ["m.safetensors", "directory"]),
    (
        "huge-T",
        _json_change(_field("schedule.num_timesteps", 2_000_000_000)),
        ["m.json", "schedule.num_timesteps"],
    ),
    (
        "huge-channels",
        _json_change(_field("model_config.channels", [262144, 524288])),
        ["m.safetensors", "wrong shapes"],
    ),
    (
        "huge-classes",
        _json_change(_field("model_config.num_classes", 2_000_000_000)),
        ["m.json", "model_config.num_classes"],
    ),
    (
        "many-blocks",
        _json_change(_field("model_config.num_res_blocks", 10**6)),
        ["m.json", "model_config.num_res_blocks"],
    ),
    (
        "many-levels",
        _json_change(_field("model_config.channels", [8] * 1000)),
        ["m.json", "model_config.channels"],
    ),
    ("int8-weights", _retyped(torch.int8), ["m.safetensors", "I8"]),
    ("bool-weights", _retyped(torch.bool), ["m.safetensors", "BOOL"]),
    (
        "weights-file-outside",
        _json_change(lambda i: i.update(format_version=2, weights_file="../outside.safetensors")),
        ["m.json", "weights_file"],
    ),
    (
        "weights-file-absolute",
        _json_change(lambda i: i.update(format_version=2, weights_file="/etc/passwd")),
        ["m.json", "weights_file"],
    ),
    ("future-version", _json_change(_field("format_version", 3)), ["m.json", "format_version"]),
]


@pytest.mark.parametrize(
    ("case", "change", "words"), CHECKPOINTS, ids=[c for c, _, _ in CHECKPOINTS]
)
def test_a_hostile_checkpoint_is_one_error_naming_the_file(case, change, words, tmp_path):
    json_path, weights = _legacy_pair(tmp_path)
    change(json_path, weights)
    with deadline(60), pytest.raises((CheckpointError, FileNotFoundError)) as info:
        load_checkpoint(json_path)
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    for word in words:
        assert word in message, (word, message)


@pytest.mark.parametrize("case", ["json-fifo", "huge-T", "int8-weights"])
def test_generate_with_a_hostile_checkpoint_is_one_line_and_exit_2(case, tmp_path, capsys):
    _, change, words = next(c for c in CHECKPOINTS if c[0] == case)
    json_path, weights = _legacy_pair(tmp_path)
    change(json_path, weights)
    argv = [*ARGS, "--out", str(tmp_path / "run")]
    argv[argv.index("digits")] = str(json_path)
    capsys.readouterr()
    with deadline(60):
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert _outcome(2, "", err, words[0]) == "message", err
    assert not (tmp_path / "run").exists()


# ------------------------------------------------ kill -9 at every step of a checkpoint save
KILL_POINTS = ("open", "write", "fsync", "replace", "rename", "remove", "unlink")


def _model(seed: int) -> UNet:
    torch.manual_seed(seed)
    return UNet(UNetConfig(channels=(8, 16), num_res_blocks=1, groups=4, num_classes=3))


def _save_killed_at(step: int, stem: Path, model: UNet) -> bool:
    """Save ``model`` at ``stem`` in a forked child that SIGKILLs itself at its ``step``-th
    file-system call (a write lands half first); True if the kill came before the end."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 3
        try:
            count = [0]

            def hooked(name, real):
                def call(*args, **kwargs):
                    count[0] += 1
                    if count[0] == step:
                        if name == "write":
                            real(args[0], bytes(args[1])[: len(args[1]) // 2])
                        os.kill(os.getpid(), signal.SIGKILL)
                    return real(*args, **kwargs)

                return call

            for name in KILL_POINTS:
                setattr(os, name, hooked(name, getattr(os, name)))
            save_checkpoint(stem, model, schedule={"name": "linear", "num_timesteps": 50})
            code = 0
        finally:
            os._exit(code)
    end = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > end:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise TimeoutError(f"the save killed at step {step} hung")
        time.sleep(0.005)
    assert os.WIFSIGNALED(status) or os.WEXITSTATUS(status) == 0, status
    return os.WIFSIGNALED(status)


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("old", ["none", "version 1", "version 2"])
def test_kill_9_at_every_step_of_a_save_leaves_the_old_or_the_new_checkpoint(old, tmp_path):
    stem = tmp_path / "m"
    old_model, new_model = _model(0), _model(1)
    if old != "none":
        save_checkpoint(stem, old_model, schedule={"name": "linear", "num_timesteps": 50})
    if old == "version 1":  # as the shipped checkpoints are: m.json + m.safetensors
        weights, json_path = checkpoint_files(stem)
        weights.rename(tmp_path / "m.safetensors")
        _edit(json_path, lambda i: (i.update(format_version=1), i.pop("weights_file")))
    snapshot = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    old_state, new_state = _weights(old_model), _weights(new_model)
    seen, step = [], 0
    while True:
        step += 1
        for p in tmp_path.iterdir():  # back to the old checkpoint, exactly
            if p.name not in snapshot:
                p.unlink()
        for name, data in snapshot.items():
            if not (tmp_path / name).is_file() or (tmp_path / name).read_bytes() != data:
                (tmp_path / name).write_bytes(data)
        killed = _save_killed_at(step, stem, new_model)
        try:
            loaded, _ = load_checkpoint(stem)
            state = _weights(loaded)
            seen.append(
                "new" if _same(state, new_state) else "old" if _same(state, old_state) else "MIXED"
            )
        except FileNotFoundError:
            seen.append("absent")
        assert seen[-1] != "MIXED" and (seen[-1] != "absent" or old == "none"), (step, seen)
        if not killed:
            break
        assert step < 60
    assert seen[-1] == "new" and step > 8  # the kills covered every step of the save
    if old != "none":
        assert "absent" not in seen and seen[0] == "old"
    # after the last kill the old weights are gone and a later save sweeps dead temps
    save_checkpoint(stem, new_model, schedule={"name": "linear", "num_timesteps": 50})
    names = sorted(p.name for p in tmp_path.iterdir())
    assert not [n for n in names if n.endswith(".tmp")], names
    assert [n for n in names if n.endswith(".safetensors")] == [checkpoint_files(stem)[0].name]


def test_a_new_checkpoint_loads_and_names_its_weights(tmp_path):
    weights, json_path = save_checkpoint(
        tmp_path / "m", _model(2), schedule={"name": "linear", "num_timesteps": 50}
    )
    info = json.loads(json_path.read_text())
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert info["format_version"] == 2 and info["weights_sha256"] == digest
    assert weights.name == info["weights_file"] == f"m.{digest[:16]}.safetensors"
    assert oct(weights.stat().st_mode & 0o777) == "0o644"
    for given in (tmp_path / "m", json_path, weights):  # any of the names loads it
        assert _same(_weights(load_checkpoint(given)[0]), _weights(_model(2)))


# ------------------------------------------------ the table cache
def _cut(path: Path) -> None:
    with path.open("ab") as f:
        f.write(b'{"key": {"seed": 9}, "ro')  # a kill or a full disk mid-line


BAD_LINES = {
    "cut": _cut,
    "list": lambda p: p.open("a").write("[1, 2, 3]\n"),
    "no-key": lambda p: p.open("a").write('{"row": {"fd": 1.0}}\n'),
    "row-not-object": lambda p: p.open("a").write('{"key": {"seed": 8}, "row": 5}\n'),
    "not-utf8": lambda p: p.open("ab").write(b'{"key": {"seed": 7}, "row": {"x": "\xff"}}\n'),
    "deep": lambda p: p.open("a").write("[" * 100_000 + "]" * 100_000 + "\n"),
    "blank": lambda p: p.open("a").write("\n\n"),
}


@pytest.mark.parametrize("bad", list(BAD_LINES))
def test_a_bad_cache_line_is_skipped_with_one_warning_and_loses_no_row(bad, tmp_path):
    cache = TableCache(tmp_path / "c.jsonl")
    cache.put({"seed": 0}, {"fd": 1.0})
    BAD_LINES[bad](cache.path)
    cache.put({"seed": 1}, {"fd": 2.0})  # after a cut line: on a line of its own
    fresh = TableCache(cache.path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = [fresh.get({"seed": s}) for s in (0, 1, 0)]
    assert rows == [{"fd": 1.0}, {"fd": 2.0}, {"fd": 1.0}]
    expected = 0 if bad == "blank" else 1  # one warning per cache, however many reads
    assert len([w for w in caught if issubclass(w.category, CacheWarning)]) == expected


def test_a_put_cut_by_a_full_disk_never_glues_the_next_row(tmp_path, monkeypatch):
    import diffusion_lib.bench.cache as cache_module

    cache = TableCache(tmp_path / "c.jsonl")
    cache.put({"seed": 0}, {"fd": 1.0})
    real_write = os.write

    def efbig(fd, data):  # the file-size limit lets 40 bytes in
        return real_write(fd, bytes(data)[:40])

    monkeypatch.setattr(cache_module.os, "write", efbig)
    with pytest.raises(OSError, match="only 40 of"):
        cache.put({"seed": 1}, {"fd": 2.0})
    monkeypatch.setattr(cache_module.os, "write", real_write)
    cache.put({"seed": 2}, {"fd": 3.0})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheWarning)
        assert [cache.get({"seed": s}) for s in range(3)] == [{"fd": 1.0}, None, {"fd": 3.0}]


CACHE_PATHS = {  # how to make a bad --cache path, and a word of its message
    "directory": (lambda d: (d / "c").mkdir() or d / "c", "directory"),
    "fifo": (lambda d: os.mkfifo(d / "c") or d / "c", "FIFO"),
    "dev-zero": (lambda d: Path("/dev/zero"), "character device"),
    "under-a-file": (lambda d: (d / "f").write_text("x") and d / "f" / "c.jsonl", "file"),
    "empty": (lambda d: "", "not a file name"),
}


@pytest.mark.parametrize("case", list(CACHE_PATHS))
def test_a_bad_cache_path_is_refused_before_any_measuring(case, tmp_path, capsys):
    make, word = CACHE_PATHS[case]
    path = make(tmp_path)
    with deadline(30):
        with pytest.raises(ValueError, match=word):
            check_cache_path(path)
        with pytest.raises(SystemExit) as exit_info:
            table_parser("A table.", n=5).parse_args(["--cache", str(path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--cache" in err and word in err and "Traceback" not in err


# ------------------------------------------------ benchmark tables
def _render(payload):
    return f"# {payload['n']}\n"


def test_a_table_goes_to_runs_tables_unless_published(tmp_path, monkeypatch, capsys):
    committed = tmp_path / "results"
    committed.mkdir()
    (committed / "t.json").write_text('{"old": 1}\n')
    monkeypatch.setattr(tables, "RESULTS_DIR", committed)
    monkeypatch.chdir(tmp_path)
    for argv, where in (
        (["--n", "3"], tmp_path / "runs" / "tables"),
        (["--n", "4", "--out", str(tmp_path / "mine")], tmp_path / "mine"),
        (["--n", "5", "--publish"], committed),
    ):
        if where.name == "mine":
            where.mkdir()
        args = table_parser("A table.", n=7).parse_args(argv)
        payload = tables.publish_table("t", "benchmarks/t.py", argv, args, _render)
        assert json.loads((where / "t.json").read_text()) == payload
        assert (where / "t.md").read_text() == _render(payload)
        assert Path(args.out).resolve() == where.resolve()
        assert capsys.readouterr().err == f"wrote {args.out / 't.json'} and {args.out / 't.md'}\n"
        if where != committed:
            assert (committed / "t.json").read_text() == '{"old": 1}\n'
        assert payload["command"] == "python benchmarks/t.py --n " + argv[1]


@pytest.mark.parametrize("argv", [["--out", "FILE"], ["--publish", "--out", "DIR"]])
def test_a_bad_table_destination_is_refused_before_measuring(argv, tmp_path, capsys):
    (tmp_path / "FILE").write_text("x")
    argv = [str(tmp_path / a) if a in ("FILE", "DIR") else a for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        table_parser("A table.", n=5).parse_args(argv)
    assert exit_info.value.code == 2 and "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("fails_at", ["json", "md"])
def test_a_table_write_cut_short_leaves_the_committed_files_whole(
    fails_at, tmp_path, monkeypatch, capsys
):
    for name in ("t.json", "t.md"):
        (tmp_path / name).write_text(f"committed {name}\n")
    monkeypatch.setattr(tables, "RESULTS_DIR", tmp_path)
    args = table_parser("A table.", n=7).parse_args(["--publish"])
    real_write, calls = os.write, []

    def efbig(fd, data):  # the file-size limit: 10 bytes land, then EFBIG
        calls.append(1)
        if len(calls) == (1 if fails_at == "json" else 2):
            real_write(fd, bytes(data)[:10])
            raise OSError(errno.EFBIG, "File too large")
        return real_write(fd, data)

    monkeypatch.setattr(files.os, "write", efbig)
    with pytest.raises(SystemExit) as exit_info:
        tables.publish_table("t", "benchmarks/t.py", [], args, _render)
    monkeypatch.setattr(files.os, "write", real_write)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "File too large" in err
    if fails_at == "json":
        assert (tmp_path / "t.json").read_text() == "committed t.json\n"
    else:
        json.loads((tmp_path / "t.json").read_text())  # the new JSON, whole
    assert (tmp_path / "t.md").read_text() == "committed t.md\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.json", "t.md"]


@pytest.mark.parametrize("name", ["../escaped", "sub/dir", "", ".", "..", "a\x00b"])
def test_bench_name_must_be_a_plain_name_checked_before_the_run(
    name, tmp_path, monkeypatch, capsys
):
    def never(*args, **kwargs):
        raise AssertionError("the benchmark ran")

    monkeypatch.setattr("diffusion_lib.cli.bench.run_bench", never)
    argv = ["bench", "--name", name, "--out", str(tmp_path / "out"), "--device", "cpu"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--name" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
