"""How target extraction scales: processes, corpus size and disk, each measured from outside `distill targets`.

    python -m eval.experiments.scale [--corpus FILE.txt] [--lines-small 20000] [--lines-large 200000] \
        [--throughput-lines 4000]

1. Throughput: `distill targets --processes P` with the real default teacher on the same first
   `--throughput-lines` lines, P = 1 and 2, each in a fresh cache: texts/s over the `targets` stage
   and the wall time of the whole command.
2. Memory: the peak resident memory of one `distill targets --token-targets none` on
   `--lines-small` and on `--lines-large` lines, to see whether it grows with the corpus.
3. Disk: bytes per text of the targets folder with `--token-targets store` and `none`, with the
   text store and the token ids beside them.

Every command runs as its own process, started by a fresh wrapper process whose
RUSAGE_CHILDREN is that one command's peak. The memory and disk series use a tiny random
teacher (2 layers, 64 wide, the real tokenizer), because the real one is too slow for
200,000 lines on a few cores; disk is also measured with the real teacher on fewer lines.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import click
import numpy as np

from distill.data.corpus import default_corpus, iter_text_lines
from distill.errors import DistillError
from distill.io import write_json
from distill.teacher.model import DEFAULT_TEACHER, Pooling, resolve_teacher
from distill.teacher.st_modules import pooling_config

# Run one command and print its peak resident memory (the largest process it waited for), and on Linux
# its peak anonymous memory (RssAnon, sampled every 20 ms): resident memory also counts the pages of
# the memory-mapped files it writes, which the kernel may drop, anonymous memory only what it holds.
_PEAK_RSS = """import resource, subprocess, sys, time
child, anon = subprocess.Popen(sys.argv[1:]), 0
while child.poll() is None:
    try:
        with open(f"/proc/{child.pid}/status") as status:
            anon = max([anon] + [int(line.split()[1]) for line in status if line.startswith("RssAnon:")])
    except OSError:
        pass
    time.sleep(0.02)
print("peak_rss", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, flush=True)
print("peak_anon_kb", anon, flush=True)
sys.exit(child.returncode)
"""
_RSS_UNIT = 1 if sys.platform == "darwin" else 1024  # NOTE: ru_maxrss is in bytes on macOS, kilobytes on Linux
_TARGETS_LINE = re.compile(r"^targets for (\d+) texts in (.+)$", re.MULTILINE)
_MB = 2**20
_TINY = "tiny random BERT (2 layers, 64 wide, real tokenizer)"


class CommandFailed(RuntimeError):
    """A `distill` command ended with a non-zero status."""


@dataclass
class Extraction:
    """One `distill targets` command, as measured from outside it."""

    command: list[str]
    texts: int
    targets_dir: Path
    stages: dict[str, float]  # seconds per stage, as the command printed them
    wall_s: float
    peak_rss_bytes: int
    peak_anon_bytes: int  # 0 where /proc is missing

    def disk(self) -> dict[str, int]:
        """Bytes of each file of the targets folder, of the whole folder, and of the text store beside it."""
        files = {p.name: p.stat().st_size for p in sorted(self.targets_dir.iterdir()) if p.is_file()}
        store = next(self.targets_dir.parent.glob("texts-*"))
        tokens = int(np.load(self.targets_dir / "token_offsets.npy", mmap_mode="r")[-1])
        return {**files, "targets": sum(files.values()), "text_store": _folder_bytes(store), "tokens": tokens}

    def as_json(self) -> dict[str, Any]:
        return {"command": " ".join(self.command), "texts": self.texts, "stages_s": self.stages,
                "wall_s": round(self.wall_s, 2), "peak_rss_bytes": self.peak_rss_bytes,
                "peak_anon_bytes": self.peak_anon_bytes,
                "disk": self.disk()}  # fmt: skip


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def run_targets(
    corpus: Path, lines: int, cache: Path, *, teacher: str | None = None, token_targets: str = "none",
    processes: int = 1, env: dict[str, str] | None = None, vocab: Path | None = None,
) -> Extraction:  # fmt: skip
    """`distill targets` on the first `lines` lines of `corpus` into `cache`, through a fresh peak-memory wrapper.

    `vocab`: a `vocab-*` folder of the same teacher, copied into the fresh cache first.
    """
    if vocab is not None:
        shutil.copytree(vocab, cache / vocab.name)
    command = [sys.executable, "-m", "distill.cli", "targets", "--corpus", str(corpus), "--limit", str(lines),
               "--cache-dir", str(cache), "--device", "cpu",
               "--token-targets", token_targets, "--students", "static", "--processes", str(processes)]  # fmt: skip
    command += ["--teacher", teacher] if teacher else []
    click.echo(f"\n$ distill {' '.join(command[3:])}", err=True)
    stdout = cache.with_name(cache.name + ".stdout")
    started = time.perf_counter()
    with stdout.open("wb") as out:
        wrapper = subprocess.Popen([sys.executable, "-c", _PEAK_RSS, *command], stdout=out, stderr=subprocess.PIPE,
                                   env=env)  # fmt: skip
        tail = _relay(wrapper.stderr)
        status = wrapper.wait()
    wall = time.perf_counter() - started
    printed = stdout.read_text()
    found = _TARGETS_LINE.search(printed)
    if status != 0 or found is None:
        raise CommandFailed(f"exit status {status} from: {' '.join(command)}\n--- stdout ---\n{printed}"
                            f"--- stderr tail ---\n{tail}")  # fmt: skip
    stages = next(line for line in printed.splitlines() if line.startswith("stages: "))
    peak = next(line for line in printed.splitlines() if line.startswith("peak_rss "))
    anon = next(line for line in printed.splitlines() if line.startswith("peak_anon_kb "))
    return Extraction(command, int(found.group(1)), Path(found.group(2)), _stage_seconds(stages), wall,
                      int(peak.split()[1]) * _RSS_UNIT, int(anon.split()[1]) * 1024)  # fmt: skip


def _relay(stream: IO[bytes]) -> str:
    """Pass the command's stderr (its log and progress bars) through to ours; the last lines of it."""
    tail = b""
    while chunk := stream.read1(8192):
        sys.stderr.buffer.write(chunk)
        sys.stderr.buffer.flush()
        tail = (tail + chunk)[-6000:]
    lines = tail.decode("utf-8", errors="replace").replace("\r", "\n").splitlines()
    return "\n".join(line for line in lines[-40:] if line.strip())


def _stage_seconds(line: str) -> dict[str, float]:
    """`stages: load corpus 0.0s, load teacher 0.2s, targets 52.2s` -> {"load corpus": 0.0, ...}."""
    parts = (part.rsplit(" ", 1) for part in line.removeprefix("stages: ").split(", "))
    return {name: float(seconds.rstrip("s")) for name, seconds in parts}


def write_lines(corpus: str | None, path: Path, count: int) -> dict[str, Any]:
    """The first `count` non-empty lines of `corpus` (None: the default corpus) into `path`, one text per line.

    When the corpus has fewer, its lines are written again with a numbered prefix (`"1: line"`), so
    a repeat is a new text, not a duplicate that `distill` would drop.
    """
    source = _line_source(corpus)
    written, rounds, distinct = 0, 0, None
    with path.open("w", encoding="utf-8") as f:
        while written < count:
            for line in source():
                if written == count:
                    break
                f.write(f"{line}\n" if rounds == 0 else f"{rounds}: {line}\n")
                written += 1
            if written == 0:
                raise DistillError(f"corpus {corpus!r} has no non-empty lines")
            distinct = written if distinct is None else distinct
            rounds += 1
    return {"source": corpus or "gensim default corpus", "lines": count, "source_lines_used": distinct,
            "repeated_with_prefix": count > distinct}  # fmt: skip


def _line_source(corpus: str | None) -> Callable[[], Iterable[str]]:
    if corpus is None:
        texts = [" ".join(text.split()) for text in default_corpus()]  # NOTE: one text per line, whatever it held
        return lambda: (text for text in texts if text)
    if not Path(corpus).is_file():
        raise DistillError(f"corpus file {corpus!r} does not exist; give a UTF-8 .txt file, one text per line")
    return lambda: (line.strip() for line in iter_text_lines(Path(corpus)) if line.strip())


def tiny_teacher(folder: Path) -> Path:
    """A 2-layer, 64-wide BERT with random weights around the default teacher's tokenizer, as a model folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    source = resolve_teacher(DEFAULT_TEACHER)
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=512)  # fmt: skip
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    for name in ("modules.json", "sentence_bert_config.json"):  # mean pooling, normalised, the same max length
        shutil.copy(source / name, folder / name)
    write_json(folder / "1_Pooling" / "config.json", pooling_config(Pooling.MEAN, config.hidden_size))
    (folder / "2_Normalize").mkdir(exist_ok=True)
    return folder


def _threads_env(processes: int) -> dict[str, str]:
    """One process keeps torch's default threads; several split the cores, as `distill --processes` does."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    return env if processes == 1 else {**env, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // processes))}


def warm_up(corpus: Path, work: Path) -> Extraction:
    """The real teacher on 64 lines: its vocabulary vectors, to copy into later caches, and warm file caches.

    NOTE: the `targets` stage also embeds the whole vocabulary once per teacher and cache (a fixed
    cost, about a minute on two cores), which would hide the corpus's own throughput.
    """
    return run_targets(corpus, 64, work / "warm-up", env=_threads_env(1))


def _vocab(run: Extraction | None) -> Path | None:
    return None if run is None else next(run.targets_dir.parent.glob("vocab-*"))


def throughput(corpus: Path, lines: int, work: Path, warm: Extraction | None) -> dict[str, Any]:
    """Texts/s of the `targets` stage and wall time of the whole command for 1 and 2 processes."""
    out: dict[str, Any] = {"lines": lines, "teacher": DEFAULT_TEACHER, "cores": os.cpu_count(),
                           "vocab_seeded": warm is not None}  # fmt: skip
    if warm is not None:
        out["warm_up"] = warm.as_json()
    for processes in (1, 2):
        run = run_targets(corpus, lines, work / f"throughput-{processes}", processes=processes,
                          env=_threads_env(processes), vocab=_vocab(warm))  # fmt: skip
        threads = _threads_env(processes).get("OMP_NUM_THREADS", "default")
        out[f"processes_{processes}"] = {**run.as_json(), "texts_per_s": run.texts / run.stages["targets"],
                                         "omp_threads": threads}  # fmt: skip
    one, two = out["processes_1"], out["processes_2"]
    out["ratio_2_to_1"] = {"texts_per_s": two["texts_per_s"] / one["texts_per_s"],
                           "wall": two["wall_s"] / one["wall_s"]}  # fmt: skip
    return out


def print_throughput(out: dict[str, Any]) -> None:
    one = out["processes_1"]
    click.echo(f"\n1. extraction throughput: real teacher {out['teacher']} on cpu ({out['cores']} cores), "
               f"{out['lines']:,} lines -> {one['texts']:,} texts, --token-targets none, fresh cache each")  # fmt: skip
    if out["vocab_seeded"]:
        warm = out["warm_up"]["stages_s"]["targets"]
        click.echo(f"   the vocabulary vectors were built once (warm-up `targets` stage {warm:.1f} s for 64 lines) "
                   "and copied into each cache, so the stage below times the corpus alone")  # fmt: skip
    else:
        click.echo("   the `targets` stage below includes embedding the whole vocabulary once (--fresh-vocab)")
    click.echo(f"   {'processes':>9} {'threads each':>12} {'targets s':>10} {'texts/s':>8} {'wall s':>7}")
    for processes in (1, 2):
        row = out[f"processes_{processes}"]
        click.echo(f"   {processes:>9} {row['omp_threads']:>12} {row['stages_s']['targets']:>10.1f} "
                   f"{row['texts_per_s']:>8.1f} {row['wall_s']:>7.1f}")  # fmt: skip
    ratio = out["ratio_2_to_1"]
    click.echo(f"   2 processes / 1: texts/s x{ratio['texts_per_s']:.2f}, wall time x{ratio['wall']:.2f}")


def memory(corpus: Path, teacher: Path, sizes: list[int], work: Path) -> list[Extraction]:
    """One `distill targets --token-targets none` per corpus size, each measured for its peak resident memory."""
    return [run_targets(corpus, lines, work / f"memory-{lines}", teacher=str(teacher)) for lines in sizes]


def print_memory(out: dict[str, Any]) -> None:
    click.echo(f"\n2. peak memory of one `distill targets --token-targets none`, {out['teacher']} on cpu")
    click.echo(f"   {'lines':>9} {'texts':>9} {'text store MB':>13} {'targets MB':>10} {'peak RSS MB':>11} "
               f"{'peak anon MB':>12} {'targets s':>9} {'wall s':>7}")  # fmt: skip
    rows = list(out["runs"].items())
    for lines, run in rows:
        click.echo(f"   {int(lines):>9,} {run['texts']:>9,} {run['disk']['text_store'] / _MB:>13.1f} "
                   f"{run['disk']['targets'] / _MB:>10.1f} {run['peak_rss_bytes'] / _MB:>11.1f} "
                   f"{run['peak_anon_bytes'] / _MB:>12.1f} "
                   f"{run['stages_s']['targets']:>9.1f} {run['wall_s']:>7.1f}")  # fmt: skip
    (small, first), (large, last) = rows[0], rows[-1]
    before, after = first["peak_rss_bytes"], last["peak_rss_bytes"]
    anon = last["peak_anon_bytes"] - first["peak_anon_bytes"]
    click.echo(f"   {int(large) / int(small):.0f}x the lines: peak RSS x{after / before:.2f} "
               f"({(after - before) / _MB:+.1f} MB), peak anonymous memory {anon / _MB:+.1f} MB "
               f"({anon / max(1, last['texts'] - first['texts']):.0f} bytes a text more)")  # fmt: skip


def disk(
    corpus: Path, tiny: Path, lines: int, real_lines: int, work: Path, tiny_none: Extraction | None,
    warm: Extraction | None,
) -> list[dict]:  # fmt: skip
    """Bytes per text of the targets folder in each `--token-targets` mode, for the tiny and the real teacher."""
    plan = [("tiny", str(tiny), lines, "store"), ("tiny", str(tiny), lines, "none"),
            ("tiny", str(tiny), lines, "online"), ("real", None, real_lines, "store"),
            ("real", None, real_lines, "none")]  # fmt: skip
    rows = []
    for label, teacher, count, mode in plan:
        if (label, mode) == ("tiny", "none") and tiny_none is not None and count == _limit(tiny_none):
            run = tiny_none  # NOTE: the memory series' small run is this very command
        else:
            run = run_targets(corpus, count, work / f"disk-{label}-{mode}", teacher=teacher, token_targets=mode,
                              vocab=None if teacher else _vocab(warm))  # fmt: skip
        rows.append({"teacher": label, "lines": count, "mode": mode, **run.as_json()})
    return rows


def _limit(run: Extraction) -> int:
    return int(run.command[run.command.index("--limit") + 1])


def print_disk(rows: list[dict]) -> None:
    click.echo("\n3. disk per text (bytes) of the targets folder by --token-targets; tiny = the random teacher of 2., "
               f"real = {DEFAULT_TEACHER}")  # fmt: skip
    click.echo(f"   {'teacher':<7} {'mode':<6} {'texts':>7} {'tokens/text':>11} {'targets':>8} {'sentence':>8} "
               f"{'token ids':>9} {'token vectors':>13} {'text store':>10}")  # fmt: skip
    for row in rows:
        d, n = row["disk"], row["texts"]
        ids = d["token_ids.npy"] + d["token_offsets.npy"]
        click.echo(f"   {row['teacher']:<7} {row['mode']:<6} {n:>7,} {d['tokens'] / n:>11.1f} {d['targets'] / n:>8.0f} "
                   f"{d['sentence_vectors.npy'] / n:>8.0f} {ids / n:>9.1f} {d.get('token_vectors.npy', 0) / n:>13.0f} "
                   f"{d['text_store'] / n:>10.1f}")  # fmt: skip
    click.echo("   online keeps the same files as none (sentence vectors and token ids); its token vectors are "
               "recomputed by the teacher in training")  # fmt: skip


@click.command()
@click.option("--corpus", type=click.Path(dir_okay=False),
              help="A UTF-8 .txt file, one text per line [default: the gensim default corpus].")  # fmt: skip
@click.option("--lines-small", type=click.IntRange(min=100), default=20000, show_default=True,
              help="Lines of the smaller memory run, and of the tiny teacher's disk runs.")  # fmt: skip
@click.option("--lines-large", type=click.IntRange(min=100), default=200000, show_default=True,
              help="Lines of the larger memory run.")  # fmt: skip
@click.option("--throughput-lines", type=click.IntRange(min=100), default=4000, show_default=True,
              help="Lines for the real teacher's throughput runs.")  # fmt: skip
@click.option("--disk-lines", type=click.IntRange(min=100), default=2000, show_default=True,
              help="Lines for the real teacher's disk runs.")  # fmt: skip
@click.option("--series", default="throughput,memory,disk", show_default=True, help="Which measurements to make.")
@click.option("--fresh-vocab", is_flag=True,
              help="Let each real-teacher run embed the vocabulary itself [default: built once, copied].")  # fmt: skip
@click.option("--out", default="runs/bench/scale.json", show_default=True, help="Where the figures are saved as JSON.")
def main(corpus: str | None, lines_small: int, lines_large: int, throughput_lines: int, disk_lines: int, series: str,
         fresh_vocab: bool, out: str) -> None:  # fmt: skip
    """Measure how `distill targets` scales with processes, corpus size and --token-targets; print and save it."""
    chosen = [s.strip() for s in series.split(",")]
    unknown = set(chosen) - {"throughput", "memory", "disk"}
    if unknown:
        raise click.BadParameter(f"unknown series {', '.join(sorted(unknown))}", param_hint="--series")
    try:
        with tempfile.TemporaryDirectory(prefix="distill-scale-") as work:
            report = measure(Path(work), corpus, chosen, [lines_small, lines_large], throughput_lines, disk_lines,
                             not fresh_vocab)  # fmt: skip
    except (DistillError, CommandFailed) as e:
        raise click.ClickException(str(e)) from e
    write_json(out, report)
    click.echo(f"\nsaved {out}")


def measure(work: Path, corpus: str | None, series: list[str], sizes: list[int], throughput_lines: int,
            disk_lines: int, seed_vocab: bool) -> dict[str, Any]:  # fmt: skip
    lines = work / "lines.txt"
    needed = max([throughput_lines] * ("throughput" in series) + sizes * ("memory" in series)
                 + [sizes[0], disk_lines] * ("disk" in series))  # fmt: skip
    report: dict[str, Any] = {"machine": {"cores": os.cpu_count(), "platform": platform.platform()},
                              "corpus": write_lines(corpus, lines, needed)}  # fmt: skip
    if report["corpus"]["repeated_with_prefix"]:
        click.echo(f"the corpus has {report['corpus']['source_lines_used']:,} non-empty lines; they are repeated "
                   f'with a numbered prefix ("1: ...") to make {needed:,} distinct lines')  # fmt: skip
    tiny = tiny_teacher(work / "tiny-teacher") if {"memory", "disk"} & set(series) else None
    warm = warm_up(lines, work) if seed_vocab and {"throughput", "disk"} & set(series) else None
    if "throughput" in series:
        report["throughput"] = throughput(lines, throughput_lines, work, warm)
        print_throughput(report["throughput"])
    small: Extraction | None = None
    if "memory" in series:
        runs = memory(lines, tiny, sizes, work)
        small = runs[0]
        report["memory"] = {"teacher": _TINY, "token_targets": "none",
                            "runs": {str(n): run.as_json() for n, run in zip(sizes, runs, strict=True)}}  # fmt: skip
        print_memory(report["memory"])
    if "disk" in series:
        report["disk"] = disk(lines, tiny, sizes[0], disk_lines, work, small, warm)
        print_disk(report["disk"])
    return report


if __name__ == "__main__":
    main()
