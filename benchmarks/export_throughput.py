"""GGUF export and blob upload throughput for a ~110 M-parameter Llama (random weights).

The model is the ``base`` preset (hidden 768, 12 layers, intermediate 2048, untied
embeddings) with random weights, saved by ``save_pretrained`` in fp32 safetensors, with a
byte-level BPE tokenizer of 16,384 tokens trained here (:func:`aicoderd.training.tokenizer.build`)
on the standard library's ``.py`` files: the same kind of directory the training stage writes.

Every measured step runs in its own child process, reaped with ``wait4``. Peak RSS is each
child's own ``VmHWM`` (``ru_maxrss`` would also count the parent's memory: see :func:`spawn`),
except for llama.cpp's script, whose ``ru_maxrss`` is used. The page cache is warm throughout
(the checkpoint was just written), so the figures are CPU and write bound, not read bound.

- ``copy``: ``shutil.copyfile`` of ``model.safetensors`` + ``fsync`` — the I/O floor;
- ``f16`` / ``q8_0``: :func:`aicoderd.export.convert.export` (the built-in converter) in a
  child that has imported only the converter. Its own clock is split, by wrapping
  ``vocab.read`` and through the progress hook, into reading the vocabulary (``tokenizers``
  alone for this model directory; timed again once imported), the tensors (header included)
  and the final sync/rename; VmRSS is sampled after the vocabulary and after every tensor, so
  the peak splits into "before the tensors" and "while streaming them";
- ``reference``: the same converter once per type on the path it took before it was made
  fast (the vocabulary through ``transformers.AutoTokenizer``, which imports torch, and every
  tensor encoded on one thread). Its output must be byte-identical to the fast path's; where
  it is not, the two files are compared with gguf's reader (metadata, then tensors) and the
  run fails naming what differs;
- ``llama.cpp``: when ``llama.cpp/convert_hf_to_gguf.py`` exists, that script
  (``--outtype f16``) on the same weights (hard-linked) with a SentencePiece ``tokenizer.model``
  trained here (llama.cpp refuses a BPE tokenizer it has never seen; needs ``sentencepiece``,
  not a project dependency); skipped with a line otherwise. It is timed end to end only, so
  ours are shown end to end as well.

Each is run ``--repeat`` times, alternating, best kept. Ratios are to the copy and to
llama.cpp's converter of the same run; the last lines hold them against the targets (end to end
at most 0.5x llama.cpp's, in process at most 3x the copy, peak RSS at most 170 MB).

Blob upload: a file of ``--upload-mb`` MB (the F16 export repeated; 0: the F16 export itself),
each server in its own process, each client in its own process, same 4 MiB chunks:

- ``ours → fake``: :class:`aicoderd.ollama.blobs.BlobUpload` against
  :class:`aicoderd.ollama.testing.FakeOllama` — the sha256 pass (digest cache removed first),
  then ``HEAD`` + the streamed ``POST`` (hashed again on the way; the server hashes and writes
  it to disk);
- ``plain → fake``: one streaming ``httpx`` POST of the same file, digest known beforehand;
- ``plain → sink``: the same POST to a ``ThreadingHTTPServer`` that reads and discards.

    .venv/bin/python benchmarks/export_throughput.py [--repeat 3] [--upload-mb 1024] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LLAMA_CPP = ROOT / "llama.cpp"
PRESET = "base"
CHUNK = 4 * 2**20  # aicoderd.ollama.blobs.CHUNK
MB = 1e6


# -- helpers -------------------------------------------------------------------------------------


def _vm(field: str) -> int:
    """A ``/proc/self/status`` field in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


def spawn(cmd: list[str], log: Path) -> dict[str, Any]:
    """Run ``cmd``; wall time, ``ru_maxrss``, exit code and the JSON of its last stdout line.

    Linux counts in a child's ``ru_maxrss`` the high-water mark of the memory it was exec'd
    from, which with vfork/posix_spawn is this process's: so our own children report their
    own ``VmHWM`` instead, ``ru_maxrss`` is used for llama.cpp's script only, and this process
    stays small (its VmHWM is printed)."""
    started = time.perf_counter()
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=err, cwd=ROOT)
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    lines = out.decode(errors="replace").strip().splitlines()
    result: dict[str, Any] = {}
    if proc.returncode == 0 and lines and lines[-1].startswith("{"):
        result = json.loads(lines[-1])
    return result | {
        "wall": time.perf_counter() - started,
        "maxrss_mb": usage.ru_maxrss / 1024,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rc": proc.returncode,
    }


def me(part: str, *args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--part", part, *args]


def stdlib_texts(max_bytes: int) -> list[str]:
    """The standard library's ``.py`` files, in name order, until ``max_bytes``."""
    texts, size = [], 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        if "test" in path.parts:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        texts.append(text)
        size += len(text)
        if size >= max_bytes:
            break
    return texts


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- child parts ---------------------------------------------------------------------------------


def part_make(args: argparse.Namespace) -> dict[str, Any]:
    """The model directory: BPE tokenizer, config, random fp32 weights."""
    import torch
    from transformers import LlamaForCausalLM

    from aicoderd.training import prompt, shapes
    from aicoderd.training import tokenizer as tokenization

    out = Path(args.model)
    s = shapes.PRESETS[PRESET]
    tok = tokenization.build(stdlib_texts(6_000_000), s.vocab, "gpt2")
    tok.save_pretrained(str(out))
    config = shapes.llama_config(s, len(tok), tokenization.token_id(tok, prompt.EOT))
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(str(out))
    return {"parameters": sum(p.numel() for p in model.parameters()), "vocab": len(tok)}


def part_spm(args: argparse.Namespace) -> dict[str, Any]:
    """llama.cpp's input: the same weights and config with a SentencePiece tokenizer.model."""
    import io

    import sentencepiece as spm

    src, out = Path(args.model), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = json.loads((src / "config.json").read_text())
    lines = [ln for t in stdlib_texts(6_000_000) for ln in t.splitlines() if ln.strip()]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=buf,
        vocab_size=config["vocab_size"],
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        hard_vocab_limit=False,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        input_sentence_size=200_000,
        shuffle_input_sentence=True,
        num_threads=2,
        minloglevel=2,
    )
    (out / "tokenizer.model").write_bytes(buf.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    config.update(bos_token_id=sp.bos_id(), eos_token_id=sp.eos_id(), pad_token_id=None)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    os.link(src / "model.safetensors", out / "model.safetensors")  # the very same bytes
    return {"pieces": sp.get_piece_size()}


def part_copy(args: argparse.Namespace) -> dict[str, Any]:
    src, dst = Path(args.model) / "model.safetensors", Path(args.out)
    with contextlib.suppress(FileNotFoundError):
        dst.unlink()
    t0 = time.perf_counter()
    shutil.copyfile(src, dst)
    fsync_path(dst)
    return {"seconds": time.perf_counter() - t0, "bytes": dst.stat().st_size, **_peak()}


def part_export(args: argparse.Namespace) -> dict[str, Any]:
    from aicoderd.export import convert

    if args.reference:  # the path before: vocabulary through transformers, one thread
        plain_encoder = convert.quantize.Encoder
        convert.vocab.backend = lambda model_dir, config: convert.vocab.as_loaded(model_dir)
        convert.quantize.Encoder = lambda: plain_encoder(threads=1)  # type: ignore[misc]
    base_rss = _vm("VmRSS")
    modules = set(sys.modules)
    marks: dict[str, Any] = {}
    samples: list[int] = []
    read_vocab = convert.vocab.read

    def timed_vocab(*a: Any, **kw: Any) -> Any:  # instrumentation only: the same call
        voc = read_vocab(*a, **kw)
        marks.update(vocab=time.perf_counter(), vocab_rss=_vm("VmRSS"), vocab_args=(a, kw))
        return voc

    def progress(done: int, total: int, name: str) -> None:
        samples.append(_vm("VmRSS"))
        marks["last_tensor"] = time.perf_counter()

    convert.vocab.read = timed_vocab  # type: ignore[assignment]
    t0 = time.perf_counter()
    r = convert.export(Path(args.model), Path(args.out), args.type, progress=progress)
    t1 = time.perf_counter()
    new = set(sys.modules) - modules
    peak = _vm("VmHWM") / 1024
    a, kw = marks["vocab_args"]
    t2 = time.perf_counter()
    read_vocab(*a, **kw)  # again, with everything imported: the reading alone
    return {
        "seconds": t1 - t0,
        "vocab_s": marks["vocab"] - t0,
        "vocab_again_s": time.perf_counter() - t2,
        "tensors_s": marks["last_tensor"] - marks["vocab"],
        "sync_s": t1 - marks["last_tensor"],
        "bytes": r.bytes,
        "types": r.tensor_types,
        "base_rss_mb": base_rss / 1024,
        "vocab_rss_mb": marks["vocab_rss"] / 1024,
        "tensor_rss_mb": [min(samples) / 1024, max(samples) / 1024],
        "hwm_mb": peak,
        "imported": len(new),
        "imported_torch": "torch" in new,
        "imported_transformers": "transformers" in new,
    }


def part_diff(args: argparse.Namespace) -> dict[str, Any]:
    """What differs between two GGUFs: metadata fields, then tensors (name, type, shape, bytes)."""
    import gguf
    import numpy as np

    a, b = gguf.GGUFReader(args.file), gguf.GGUFReader(args.out)

    def fields(r: Any) -> dict[str, str]:
        return {k: str(f.contents()) for k, f in r.fields.items() if not k.startswith("GGUF.")}

    fa, fb = fields(a), fields(b)
    meta = sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k))
    tb = {t.name: t for t in b.tensors}
    tensors = sorted(
        t.name
        for t in a.tensors
        if t.name not in tb
        or (t.tensor_type, list(t.shape)) != (tb[t.name].tensor_type, list(tb[t.name].shape))
        or not np.array_equal(np.asarray(t.data), np.asarray(tb[t.name].data))
    )
    tensors += sorted(set(tb) - {t.name for t in a.tensors})
    return {"metadata": meta, "tensors": tensors}


def part_upload_ours(args: argparse.Namespace) -> dict[str, Any]:
    from aicoderd.ollama.blobs import BlobUpload, _cache_path
    from aicoderd.ollama.client import Client

    path = Path(args.file)
    _cache_path(path).unlink(missing_ok=True)  # hash from the file, not from the cache
    with Client(args.url) as client:
        upload = BlobUpload(client, path)
        t0, c0 = time.perf_counter(), _cpu()
        digest = upload.hash()
        t1, c1 = time.perf_counter(), _cpu()
        upload.ensure()
        t2, c2 = time.perf_counter(), _cpu()
    _cache_path(path).unlink(missing_ok=True)
    if digest != args.digest or upload.uploaded_bytes != path.stat().st_size:
        raise SystemExit(f"upload went wrong: {digest} {upload.uploaded_bytes}")
    times = {"hash_s": t1 - t0, "upload_s": t2 - t1, "total_s": t2 - t0}
    return times | {"hash_cpu": c1 - c0, "upload_cpu": c2 - c1, **_peak()}


def part_upload_plain(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    path = Path(args.file)
    size = path.stat().st_size

    def body() -> Iterator[bytes]:
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                yield chunk

    timeout = httpx.Timeout(connect=10.0, read=600.0, write=600.0, pool=10.0)
    with httpx.Client(timeout=timeout) as client:
        t0, c0 = time.perf_counter(), _cpu()
        resp = client.post(
            f"{args.url}/api/blobs/{args.digest}",
            content=body(),
            headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
        )
        t1, c1 = time.perf_counter(), _cpu()
    if resp.status_code != 201:
        raise SystemExit(f"upload answered {resp.status_code}: {resp.text}")
    return {"upload_s": t1 - t0, "total_s": t1 - t0, "upload_cpu": c1 - c0, **_peak()}


def _peak() -> dict[str, float]:
    return {"hwm_mb": _vm("VmHWM") / 1024}


def _cpu(pid: int | str = "self") -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Sink(BaseHTTPRequestHandler):
    """Reads the body in 1 MiB reads (as FakeOllama does) and drops it."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                return
            remaining -= len(chunk)
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()


def serve(kind: str) -> None:
    """A server in this process until stdin closes; its URL is the first stdout line."""
    if kind == "fake":
        from aicoderd.ollama.testing import FakeOllama

        with FakeOllama() as fake:
            print(fake.url, flush=True)
            sys.stdin.read()
        return
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    server.daemon_threads = True
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()
    server.shutdown()


@contextlib.contextmanager
def server(kind: str) -> Iterator[tuple[str, int]]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", kind]
    proc = subprocess.Popen(
        cmd, env=_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT, text=True
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        yield proc.stdout.readline().strip(), proc.pid
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)


# -- the run -------------------------------------------------------------------------------------


def same_bytes(a: Path, b: Path) -> bool:
    """Compared chunk by chunk: this process stays small (see :func:`spawn`)."""
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while chunk := fa.read(CHUNK):
            if chunk != fb.read(CHUNK):
                return False
    return True


def identical(work: Path, logs: Path, model: Path) -> None:
    """Each type once more on the reference path; its file against the fast path's."""
    for t in ("f16", "q8_0"):
        ours, ref = work / f"ours-{t}.gguf", work / f"reference-{t}.gguf"
        cmd = me("export", "--model", str(model), "--out", str(ref), "--type", t, "--reference")
        r = check("reference", spawn(cmd, logs / f"reference-{t}"), logs / f"reference-{t}")
        mods = "transformers + torch" if r["imported_torch"] else "no torch"
        print(
            f"reference {t} (vocabulary through transformers, one thread; {mods}):"
            f" {r['seconds']:.2f} s inside, {r['wall']:.2f} s end to end, peak RSS"
            f" {r['hwm_mb']:.0f} MiB",
            flush=True,
        )
        if same_bytes(ours, ref):
            print(f"  {ours.name} and {ref.name}: byte-identical ({ours.stat().st_size:,} bytes)")
            continue
        cmd = me("diff", "--file", str(ours), "--out", str(ref))
        diff = check("diff", spawn(cmd, logs / f"diff-{t}"), logs / f"diff-{t}")
        raise SystemExit(f"{ours.name} differs from {ref.name}: {diff}")


def largest_tensor(model_dir: Path) -> tuple[str, int]:
    from aicoderd.export import safetensors as st

    ref = max(st.tensors(model_dir), key=lambda r: r.end - r.start)
    return ref.name, ref.end - ref.start


def check(name: str, r: dict[str, Any], log: Path) -> dict[str, Any]:
    if r["rc"] != 0:
        raise SystemExit(f"{name} failed ({r['rc']}):\n{log.read_text()[-3000:]}")
    return r


def best(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return min(runs, key=lambda r: r[key])


def run(args: argparse.Namespace, work: Path) -> None:
    model, logs = work / "model", work / "logs"
    logs.mkdir()
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)", flush=True)
    made = check("make", spawn(me("make", "--model", str(model)), logs / "make"), logs / "make")
    size = (model / "model.safetensors").stat().st_size
    big_name, big = largest_tensor(model)
    print(
        f"model: {PRESET} preset, {made['parameters'] / 1e6:.1f} M parameters, vocab"
        f" {made['vocab']}, fp32 model.safetensors {size / MB:.1f} MB; largest tensor"
        f" {big_name} {big / MB:.1f} MB fp32 (made in {made['wall']:.0f} s)",
        flush=True,
    )

    llama = LLAMA_CPP / "convert_hf_to_gguf.py"
    spm_dir = work / "model-spm"
    if llama.is_file():
        r = spawn(me("spm", "--model", str(model), "--out", str(spm_dir)), logs / "spm")
        check("spm", r, logs / "spm")
        print(f"SentencePiece tokenizer for llama.cpp: {r['pieces']} pieces ({r['wall']:.0f} s)")
    else:
        print(f"llama.cpp: skipped, no {llama} (see llama.cpp/README.md)")

    runs: dict[str, list[dict[str, Any]]] = {}
    for i in range(args.repeat):
        steps: list[tuple[str, list[str]]] = [("copy", me("copy", "--model", str(model)))]
        steps[0][1].extend(["--out", str(work / "copy.safetensors")])
        for t in ("f16", "q8_0"):
            out = work / f"ours-{t}.gguf"
            steps.append((t, me("export", "--model", str(model), "--out", str(out), "--type", t)))
        if llama.is_file():
            out = work / "llamacpp-f16.gguf"
            cmd = [sys.executable, str(llama), str(spm_dir), "--outtype", "f16"]
            steps.append(("llama.cpp", [*cmd, "--outfile", str(out)]))
        for name, cmd in steps:
            log = logs / f"{name}.{i}"
            r = spawn(cmd, log)
            if name == "llama.cpp" and r["rc"] != 0:
                r["error"] = log.read_text(errors="replace").strip().splitlines()[-5:]
                print(f"  llama.cpp failed ({r['rc']}): " + " | ".join(r["error"]))
            elif name == "llama.cpp":
                r["bytes"] = (work / "llamacpp-f16.gguf").stat().st_size
            else:
                check(name, r, log)
            runs.setdefault(name, []).append(r)
            inside = f"{r['seconds']:.2f} s inside, " if "seconds" in r else ""
            print(f"  run {i + 1} {name}: {inside}{r['wall']:.2f} s end to end", flush=True)

    print()
    identical(work, logs, model)
    copy = best(runs["copy"], "seconds")
    print(f"\nexport, best of {args.repeat} (/copy: ratio to the copy's time on the same clock)")
    print(
        f"{'':<22}{'inside s':>9}{'/copy':>7}{'vocab s':>9}{'tensors s':>11}{'sync s':>8}"
        f"{'end-to-end s':>14}{'/copy':>7}{'CPU s':>7}{'out MB':>8}{'peak RSS MiB':>14}"
    )
    rows = [("copy (copyfile+fsync)", "copy"), ("aicoderd f16", "f16"), ("aicoderd q8_0", "q8_0")]
    if "llama.cpp" in runs:
        rows.append(("llama.cpp f16 (SPM)", "llama.cpp"))
    for label, key in rows:
        ok = [r for r in runs[key] if r["rc"] == 0]
        if not ok:
            print(f"{label:<22}  FAILED in every run (rc {runs[key][0]['rc']})")
            continue
        r = best(ok, "seconds") if "seconds" in ok[0] else best(ok, "wall")
        cols = f"{'-':>9}{'-':>7}"
        if "seconds" in r:
            cols = f"{r['seconds']:9.2f}{r['seconds'] / copy['seconds']:7.2f}"
        if "vocab_s" in r:
            cols += f"{r['vocab_s']:9.2f}{r['tensors_s']:11.2f}{r['sync_s']:8.2f}"
        else:
            cols += f"{'-':>9}{'-':>11}{'-':>8}"
        print(
            f"{label:<22}{cols}{r['wall']:14.2f}{r['wall'] / copy['wall']:7.2f}{r['cpu']:7.2f}"
            f"{r.get('bytes', 0) / MB:8.1f}{r.get('hwm_mb', r['maxrss_mb']):14.0f}"
        )
    print(
        f"(peak RSS: each child's VmHWM; llama.cpp's ru_maxrss, whose floor is this"
        f" process's VmHWM, {_vm('VmHWM') / 1024:.0f} MiB)"
    )
    for key in ("f16", "q8_0"):
        r = best(runs[key], "seconds")
        work_s = r["tensors_s"] + r["sync_s"]
        ratio = work_s / copy["seconds"]
        print(
            f"{key}: without the vocabulary, tensors + sync {work_s:.2f} s = {ratio:.2f} x the"
            f" copy; the vocabulary alone, once imported, {r['vocab_again_s']:.2f} s"
        )
    print(f"\nthe built-in converter's memory (largest tensor {big / 2**20:.0f} MiB fp32):")
    for key in ("f16", "q8_0"):
        r = best(runs[key], "seconds")
        lo, hi = r["tensor_rss_mb"]
        transient = r["hwm_mb"] - r["vocab_rss_mb"]
        of_big, of_file = transient * 2**20 / big, transient * 2**20 / size
        mods = "transformers" if r["imported_transformers"] else ""
        mods += " + torch" if r["imported_torch"] else ""
        print(
            f"  {key}: {r['base_rss_mb']:.0f} MiB with the converter imported; reading the"
            f" vocabulary imports {r['imported']} modules ({mods or 'none new'}) in"
            f" {r['vocab_s'] - r['vocab_again_s']:.2f} s of its {r['vocab_s']:.2f} s, RSS then"
            f" {r['vocab_rss_mb']:.0f}; VmRSS after each tensor {lo:.0f}..{hi:.0f}; peak"
            f" {r['hwm_mb']:.0f} = that + {transient:.0f} MiB for the tensors"
            f" ({of_big:.2f} x the largest tensor, {of_file:.2f} x the file)"
        )
    targets(runs, copy)

    upload(args, work, logs)


def targets(runs: dict[str, list[dict[str, Any]]], copy: dict[str, Any]) -> None:
    """The figures the converter is held to, from this run's best times."""
    llama = [r for r in runs.get("llama.cpp", []) if r["rc"] == 0]
    print("\ntargets (best runs):")
    for key in ("f16", "q8_0"):
        r = best(runs[key], "seconds")
        line = f"  {key}: in process {r['seconds'] / copy['seconds']:.2f} x the copy (<= 3);"
        if llama:
            ratio = r["wall"] / best(llama, "wall")["wall"]
            line += f" end to end {ratio:.2f} x llama.cpp's converter (<= 0.5);"
        print(f"{line} peak RSS {r['hwm_mb'] * 2**20 / MB:.0f} MB (<= 170)")


def upload(args: argparse.Namespace, work: Path, logs: Path) -> None:
    f16 = work / "ours-f16.gguf"
    path = f16
    if args.upload_mb:
        path = work / "upload.bin"
        with open(path, "wb") as fh:  # chunk by chunk: the parent stays small (see spawn)
            while fh.tell() < args.upload_mb * MB:
                with open(f16, "rb") as src:
                    shutil.copyfileobj(src, fh, CHUNK)
    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    digest = "sha256:" + h.hexdigest()
    print(f"\nblob upload of {size / MB:.0f} MB ({path.name}), best of {args.repeat}:", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {}
    variants = [
        ("ours -> fake", "fake", "upload-ours"),
        ("plain -> fake", "fake", "upload-plain"),
        ("plain -> sink", "sink", "upload-plain"),
    ]
    for i in range(args.repeat):
        for label, kind, part in variants:
            with server(kind) as (url, pid):
                cmd = me(part, "--url", url, "--file", str(path), "--digest", digest)
                log = logs / f"{part}-{kind}.{i}"
                before = _cpu(pid)
                r = check(label, spawn(cmd, log), log)
                r["server_cpu"] = _cpu(pid) - before
                runs.setdefault(label, []).append(r)
                print(f"  run {i + 1} {label}: {r['total_s']:.2f} s", flush=True)
    sink = best(runs["plain -> sink"], "upload_s")
    print(
        f"{'':<16}{'hash s':>8}{'POST s':>8}{'POST MB/s':>11}{'total s':>9}{'total MB/s':>12}"
        f"{'/ sink':>8}{'client CPU s':>14}{'server CPU s':>14}{'client RSS MiB':>16}"
    )
    for label, _, _ in variants:
        r = best(runs[label], "total_s")
        hashed = f"{r['hash_s']:8.2f}" if "hash_s" in r else f"{'-':>8}"
        cpu = f"{r['upload_cpu']:.2f}"
        if "hash_cpu" in r:
            cpu = f"{r['hash_cpu']:.2f} + {cpu}"
        print(
            f"{label:<16}{hashed}{r['upload_s']:8.2f}{size / MB / r['upload_s']:11.0f}"
            f"{r['total_s']:9.2f}{size / MB / r['total_s']:12.0f}"
            f"{sink['upload_s'] / r['total_s']:8.2f}{cpu:>14}{r['server_cpu']:14.2f}"
            f"{r['hwm_mb']:16.0f}"
        )
    print(
        "(CPU: utime + stime; ours: hash pass + POST; best run by total time; the wall times"
        " swing with other load on the machine, the CPU seconds much less)"
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--part")
    p.add_argument("--serve", choices=["fake", "sink"])
    p.add_argument("--model")
    p.add_argument("--out")
    p.add_argument("--type")
    p.add_argument("--reference", action="store_true", help="export: the path before")
    p.add_argument("--url")
    p.add_argument("--file")
    p.add_argument("--digest")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--upload-mb", type=int, default=1024, help="0: upload the F16 export")
    p.add_argument("--keep", help="work in this directory and leave it there")
    args = p.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if args.part:
        parts = {
            "make": part_make,
            "spm": part_spm,
            "copy": part_copy,
            "export": part_export,
            "diff": part_diff,
            "upload-ours": part_upload_ours,
            "upload-plain": part_upload_plain,
        }
        print(json.dumps(parts[args.part](args)))
        return
    if args.keep:
        work = Path(args.keep)
        work.mkdir(parents=True, exist_ok=False)
        run(args, work)
        return
    with tempfile.TemporaryDirectory(prefix="aicoder-bench-export-") as tmp:
        run(args, Path(tmp))


if __name__ == "__main__":
    main()
